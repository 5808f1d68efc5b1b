"""Snapshots on a remote, write-once and whole.

Layout under the remote's prefix, per snapshot NAME::

    NAME/manifest.json           the commit marker, written last with a conditional put (If-None-Match: *)
    NAME/u-<16 hex>/lease.json   who is pushing this upload (host, pid, start), written first
    NAME/u-<16 hex>/<payload>    the payloads of one push, each in its own upload folder

A snapshot exists on the remote only once its manifest.json does, and that names the upload folder it belongs
to: a killed push leaves an upload folder that nothing lists, which the next push of the name removes when its
lease says its pusher is gone; two pushes of one name upload side by side and only one manifest put succeeds.
Everything read back (names, payload names, upload ids, sizes, checksums, the snapshot's own manifest) is
checked before it is used, and every byte pulled is checked against both the remote manifest and the
snapshot's own checksums.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ... import faults
from ...errors import IntegrityError, SnapshotNotFound, UsageError
from ..confine import check_payload
from ..fsutil import create_private
from ..snapshots import MANIFEST, Snapshot, validate_name
from . import crypt
from .digest import FileHasher, FollowingFile, Hashing
from .s3 import AlreadyExists, Bucket

FORMAT = "dbsnap-remote"
FORMAT_VERSION = 1
LEASE = "lease.json"
UPLOAD_RE = re.compile(r"^u-[0-9a-f]{16}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
STALE_AFTER = timedelta(hours=24)  # an upload of another host whose lease is this old is abandoned

Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class RemoteSnapshot(Snapshot):
    """A snapshot on a remote: the snapshot's own manifest, and the remote manifest that commits it."""

    doc: dict = field(default_factory=dict)

    @property
    def encryption(self) -> dict | None:
        return self.doc.get("encryption")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RemoteStore:
    """The snapshots under one prefix of one bucket."""

    def __init__(self, bucket: Bucket, prefix: str, label: str) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.label = label

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    # -- reading --------------------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        _, prefixes = self.bucket.list(self.prefix, delimiter="/")
        names = []
        for p in prefixes:
            name = p[len(self.prefix) :].rstrip("/")
            with contextlib.suppress(UsageError):
                names.append(validate_name(name))  # anything else under the prefix is not ours: ignored
        return names

    def _parse(self, name: str, raw: bytes) -> RemoteSnapshot:
        """The remote manifest of ``name``, every field checked; IntegrityError naming the first problem."""
        what = f"remote snapshot {name!r}"
        try:
            doc = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"{what}: {MANIFEST} is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise IntegrityError(f"{what}: {MANIFEST} is not a dbsnap remote manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise IntegrityError(f"{what}: unknown remote format version {doc.get('format_version')!r}")
        if doc.get("name") != name:
            raise IntegrityError(f"{what}: its manifest names {doc.get('name')!r}")
        if not isinstance(doc.get("upload"), str) or not UPLOAD_RE.match(doc["upload"]):
            raise IntegrityError(f"{what}: invalid upload id {doc.get('upload')!r}")
        snap, objects = doc.get("snapshot"), doc.get("objects")
        if not isinstance(snap, dict) or not isinstance(snap.get("files"), dict) or not isinstance(objects, dict):
            raise IntegrityError(f"{what}: the manifest lacks the snapshot's manifest or its objects")
        if set(objects) != set(snap["files"]):
            raise IntegrityError(f"{what}: its objects do not match the snapshot's files")
        for fname, meta in objects.items():
            check_payload(fname, Path("/nonexistent-snapshot-folder"), what)
            if (
                not isinstance(meta, dict)
                or not isinstance(meta.get("bytes"), int)
                or meta["bytes"] < 0
                or not isinstance(meta.get("sha256"), str)
                or not _SHA_RE.match(meta["sha256"])
            ):
                raise IntegrityError(f"{what}: invalid object entry for {fname}")
        enc = doc.get("encryption")
        known = isinstance(enc, dict) and enc.get("algorithm") == crypt.ALGORITHM and isinstance(enc.get("key_id"), str)
        if enc is not None and not known:
            raise IntegrityError(f"{what}: unknown encryption {enc!r}")
        return RemoteSnapshot(name=name, path=Path(self._key(name)), manifest=snap, doc=doc)

    def find(self, name: str) -> RemoteSnapshot | None:
        validate_name(name)
        raw = self.bucket.get_bytes(self._key(name, MANIFEST))
        return None if raw is None else self._parse(name, raw)

    def get(self, name: str) -> RemoteSnapshot:
        found = self.find(name)
        if found is None:
            raise SnapshotNotFound(
                f"snapshot {name!r} not found on remote {self.label}", hint="'dbsnap list --remote' lists them"
            )
        return found

    def list(self, warn: Callable[[str], None] | None = None) -> list[RemoteSnapshot]:
        """Committed remote snapshots, oldest first; a damaged remote manifest is named in a warning and skipped."""
        snaps = []
        for name in self._names():
            try:
                s = self.find(name)
                if s is not None:
                    s.created_at  # noqa: B018 - a date that does not parse is damage
                    snaps.append(s)
            except (IntegrityError, KeyError, TypeError, ValueError, AttributeError) as e:
                if warn:
                    warn(f"remote snapshot {name!r} is damaged: {getattr(e, 'message', e)}")
        return sorted(snaps, key=lambda s: (s.created_at, s.name))

    # -- pushing ---------------------------------------------------------------------------------------------

    def sweep(self, dry_run: bool = False) -> list[str]:
        """:meth:`clean` every name on the remote, those never committed included (a killed first push leaves
        only its upload folder); return the ``NAME/u-...`` removed (or, with ``dry_run``, that would be)."""
        swept = []
        for name in self._names():
            swept += [f"{name}/{uid}" for uid in self.clean(name, dry_run=dry_run)]
        return swept

    def clean(self, name: str, dry_run: bool = False) -> list[str]:
        """Remove the upload folders of ``name`` that no manifest names and whose pusher is gone (a dead pid on
        this host, or a lease older than STALE_AFTER); return their ids. Uploads in progress are left alone:
        a live pusher, a lease of another host younger than STALE_AFTER, or a folder whose lease is not
        readable yet and whose newest object is younger than STALE_AFTER."""
        try:
            committed = self.find(name)
        except IntegrityError:
            return []  # a damaged manifest: nothing under the name is touched until it is deleted
        keep = committed.doc["upload"] if committed else None
        objects, _ = self.bucket.list(self._key(name) + "/")
        uploads: dict[str, list[dict]] = {}
        for o in objects:
            rest = o["key"][len(self._key(name)) + 1 :]
            uid = rest.split("/", 1)[0]
            if UPLOAD_RE.match(uid) and uid != keep:
                uploads.setdefault(uid, []).append(o)
        removed = []
        now = datetime.now(timezone.utc)
        for uid, objs in sorted(uploads.items()):
            lease = None
            with contextlib.suppress(ValueError, IntegrityError):
                raw = self.bucket.get_bytes(self._key(name, uid, LEASE), limit=65536)
                lease = json.loads(raw) if raw else None
            newest = max(o["modified"] for o in objs)
            if isinstance(lease, dict) and lease.get("host") == socket.gethostname():
                gone = not _pid_alive(lease.get("pid"))
            else:
                gone = now - newest > STALE_AFTER
            if gone and not dry_run:
                self.bucket.abort_uploads(self._key(name, uid) + "/")
                self.bucket.delete([o["key"] for o in objs])
            if gone:
                removed.append(uid)
        return removed

    def push(
        self, snap: Snapshot, key: crypt.CryptKey | None, progress: Progress | None = None
    ) -> tuple[RemoteSnapshot, bool]:
        """Upload a (verified) local snapshot; returns (the remote snapshot, False) when an identical one is
        already there. UsageError when another snapshot of that name is there or another push wins meanwhile;
        IntegrityError when a local payload does not match its checksum while it is read."""
        name = validate_name(snap.name)
        existing = self.find(name)
        if existing is not None:
            if existing.manifest.get("manifest_sha256") == snap.manifest.get("manifest_sha256"):
                return existing, False
            raise UsageError(
                f"another snapshot called {name!r} is already on remote {self.label}",
                hint="remote snapshots are write-once: save under another name, or 'dbsnap delete --remote' it first",
            )
        self.clean(name)
        uid = f"u-{secrets.token_hex(8)}"
        lease = {"host": socket.gethostname(), "pid": os.getpid(), "started": _now()}
        self.bucket.put_bytes(self._key(name, uid, LEASE), json.dumps(lease).encode())
        try:
            objects = {}
            for fname, meta in sorted(snap.manifest["files"].items()):
                path = snap.path / check_payload(fname, snap.path, f"snapshot {name!r}")
                tick = progress(f"push {name}/{fname}", meta["bytes"]) if progress else None
                if key is None:
                    # The object is the payload itself: boto3 uploads the file, a thread hashes it meanwhile.
                    hasher = FileHasher(path)
                    self.bucket.upload_path(self._key(name, uid, fname), str(path), tick)
                    count, sha = hasher.result()
                    sent_count, sent_sha = count, sha
                else:
                    with open(path, "rb") as f:
                        plain = Hashing(src=f)
                        enc = crypt.EncryptingReader(io.BufferedReader(plain, 1 << 20), key, f"{name}/{fname}")
                        sent = Hashing(src=io.BufferedReader(enc, 1 << 20))  # type: ignore[arg-type]
                        self.bucket.upload(self._key(name, uid, fname), sent, tick)  # type: ignore[arg-type]
                    count, sha = plain.count, plain.sha.hexdigest()
                    sent_count, sent_sha = sent.count, sent.sha.hexdigest()
                if count != meta["bytes"] or sha != meta["sha256"]:
                    raise IntegrityError(f"snapshot {name!r}: payload {fname} changed while it was pushed")
                objects[fname] = {"bytes": sent_count, "sha256": sent_sha}
                faults.point("remote.push-after-payload")
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": name,
                "upload": uid,
                "pushed_at": _now(),
                "pushed_from": socket.gethostname(),
                "snapshot": snap.manifest,
                "objects": objects,
                "encryption": {"algorithm": crypt.ALGORITHM, "key_id": key.id} if key is not None else None,
            }
            faults.point("remote.push-before-manifest")
            try:
                self.bucket.put_bytes(self._key(name, MANIFEST), json.dumps(doc, indent=2).encode(), if_absent=True)
            except AlreadyExists:
                raise UsageError(
                    f"another push of {name!r} to remote {self.label} finished first; this one was discarded",
                    hint="'dbsnap list --remote' shows the snapshot that won",
                ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                self.bucket.abort_uploads(self._key(name, uid) + "/")
                objs, _ = self.bucket.list(self._key(name, uid) + "/")
                self.bucket.delete([o["key"] for o in objs])
            raise
        faults.point("remote.push-after-manifest")
        with contextlib.suppress(Exception):
            self.bucket.delete([self._key(name, uid, LEASE)])
        return self._parse(name, json.dumps(doc).encode()), True

    # -- pulling ---------------------------------------------------------------------------------------------

    def pull_into(
        self, rs: RemoteSnapshot, staged: Path, key: crypt.CryptKey | None, progress: Progress | None = None
    ) -> None:
        """Download every payload of ``rs`` into the empty folder ``staged`` (decrypting with ``key``), checking
        each object's size and SHA-256 as pushed and each payload's against the snapshot's own manifest, and
        write the snapshot's manifest.json there. IntegrityError on any difference; the caller removes
        ``staged`` then."""
        enc = rs.encryption
        if enc is not None:
            if key is None:
                raise IntegrityError(
                    f"remote snapshot {rs.name!r} is encrypted (key {enc['key_id']}) and no encryption key is set",
                    hint="set DBSNAP_ENCRYPTION_KEY or DBSNAP_ENCRYPTION_KEY_FILE to the key it was pushed with",
                )
            if key.id != enc["key_id"]:
                raise IntegrityError(
                    f"remote snapshot {rs.name!r} is encrypted with key {enc['key_id']}, not the set key {key.id}",
                    hint="set DBSNAP_ENCRYPTION_KEY or DBSNAP_ENCRYPTION_KEY_FILE to the key it was pushed with",
                )
        files = rs.manifest["files"]
        for fname, obj in sorted(rs.doc["objects"].items()):
            what = f"remote snapshot {rs.name!r}: {fname}"
            meta = files[fname]
            tick = progress(f"pull {rs.name}/{fname}", obj["bytes"]) if progress else None
            remote_key = self._key(rs.name, rs.doc["upload"], fname)
            target = staged / check_payload(fname, staged, what)
            with create_private(target) as f:
                if enc is None:
                    # The object is the payload itself: written at its offsets by parallel ranged GETs, hashed
                    # once by a thread as it lands; it must match both the remote manifest and the snapshot's own.
                    follow = FollowingFile(f, target)
                    try:
                        self.bucket.download_at(remote_key, follow, tick)  # type: ignore[arg-type]
                    except BaseException:
                        follow.abandon()
                        raise
                    got_count, got_sha = follow.finish()
                    plain_count, plain_sha = got_count, got_sha
                else:
                    plain = Hashing(dest=f)
                    dw = crypt.DecryptingWriter(plain, key, f"{rs.name}/{fname}", what)  # type: ignore[arg-type]
                    got = Hashing(dest=dw)
                    self.bucket.download(remote_key, got, tick)  # type: ignore[arg-type]
                    got_count, got_sha = got.count, got.sha.hexdigest()
                if got_count != obj["bytes"] or got_sha != obj["sha256"]:
                    raise IntegrityError(
                        f"{what} fails its checksum on the remote ({got_count} bytes received, {obj['bytes']} pushed)",
                        hint="the remote copy was changed or damaged; pull another snapshot",
                    )
                if enc is not None:
                    dw.finish()
                    plain_count, plain_sha = plain.count, plain.sha.hexdigest()
                    f.flush()
                    os.fsync(f.fileno())
                if plain_count != meta.get("bytes") or plain_sha != meta.get("sha256"):
                    raise IntegrityError(f"{what} does not match the snapshot's own checksum")
            faults.point("remote.pull-after-payload")
        # The snapshot's manifest as it was taken: never re-dumped with a new checksum, so a changed one is caught.
        with create_private(staged / MANIFEST) as f:
            f.write((json.dumps(rs.manifest, indent=2, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    # -- removing --------------------------------------------------------------------------------------------

    def delete(self, rs: RemoteSnapshot) -> None:
        """Remove a remote snapshot: its manifest first (it stops being listed at once), then every object
        under its name."""
        self.bucket.delete([self._key(rs.name, MANIFEST)])
        faults.point("remote.delete-after-manifest")
        objs, _ = self.bucket.list(self._key(rs.name) + "/")
        self.bucket.delete([o["key"] for o in objs])
