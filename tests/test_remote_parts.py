"""The remote's parts on their own: configuration, the encrypted stream, and multipart transfers of a payload
larger than one part (through the library, against the session's SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from conftest import S3Server

from dbsnap.errors import ConfigError, IntegrityError, UsageError
from dbsnap.settings import resolve_remote
from dbsnap.store.remote import crypt
from dbsnap.store.remote.s3 import PART, Bucket
from dbsnap.store.remote.snapshots import RemoteStore
from dbsnap.store.snapshots import Snapshot

KEY = {"DBSNAP_ENCRYPTION_KEY": "a key long enough for the tests"}


# -- configuration ---------------------------------------------------------------------------------------------


def write_pyproject(root: Path, text: str) -> Path:
    (root / "pyproject.toml").write_text(text)
    return root


def test_remote_precedence_flag_then_environment_then_the_configured_default(tmp_path: Path) -> None:
    root = write_pyproject(
        tmp_path,
        """
[tool.dbsnap.remotes]
default = "team"
team = { url = "s3://team-bucket/shop", endpoint = "http://minio:9000", profile = "work" }
offsite = { url = "s3://offsite/shop/", encrypt = true }
""",
    )
    env = {"AWS_ENDPOINT_URL_S3": "http://s3.example", "AWS_ENDPOINT_URL": "http://ignored"}
    r = resolve_remote(None, env, root)
    assert (r.name, r.bucket, r.prefix, r.endpoint, r.profile) == (
        "team",
        "team-bucket",
        "shop",
        "http://minio:9000",
        "work",
    )
    r = resolve_remote(None, {**env, "DBSNAP_REMOTE": "offsite"}, root)
    assert (r.bucket, r.prefix, r.endpoint, r.encrypt) == ("offsite", "shop", "http://s3.example", True)
    r = resolve_remote("s3://other/x/y", {**env, "DBSNAP_REMOTE": "offsite"}, root)
    assert (r.bucket, r.prefix) == ("other", "x/y")
    assert resolve_remote(
        None, {"AWS_ENDPOINT_URL": "http://generic"}, root, {"default": "x", "x": "s3://b"}
    ).endpoint == ("http://generic")


def test_bad_remote_configuration_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no remote configured"):
        resolve_remote(None, {}, tmp_path)
    with pytest.raises(UsageError, match="expected s3://"):
        resolve_remote("/backups", {}, tmp_path)
    with pytest.raises(UsageError, match=r"'\.\.' parts"):
        resolve_remote("s3://bucket/a/../b", {}, tmp_path)
    write_pyproject(tmp_path, '[tool.dbsnap.remotes]\na = "s3://a"\nb = "s3://b"\n')
    with pytest.raises(UsageError, match="several remotes and no default"):
        resolve_remote(None, {}, tmp_path)
    with pytest.raises(UsageError, match="unknown remote 'c'"):
        resolve_remote("c", {}, tmp_path)
    write_pyproject(tmp_path, '[tool.dbsnap.remotes]\na = { url = "s3://a", secret_key = "x" }\n')
    with pytest.raises(ConfigError, match="unknown setting 'secret_key'"):
        resolve_remote(None, {}, tmp_path)


# -- the encrypted stream ----------------------------------------------------------------------------------------


def encrypt(data: bytes, key: crypt.CryptKey, label: str = "s/f") -> bytes:
    return crypt.EncryptingReader(io.BytesIO(data), key, label).read()


def decrypt(blob: bytes, key: crypt.CryptKey, label: str = "s/f", step: int = 7777) -> bytes:
    out = io.BytesIO()
    w = crypt.DecryptingWriter(out, key, label, "test")
    for i in range(0, len(blob), step):
        w.write(blob[i : i + step])
    w.finish()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, crypt.CHUNK - 1, crypt.CHUNK, crypt.CHUNK + 1, 3 * crypt.CHUNK])
def test_the_encrypted_stream_round_trips_at_chunk_boundaries(size: int) -> None:
    key = crypt.load_key(KEY)
    data = os.urandom(size)
    blob = encrypt(data, key)
    assert len(blob) == crypt.encrypted_size(size)
    assert decrypt(blob, key) == data


def test_the_encrypted_stream_refuses_a_wrong_key_a_swap_a_cut_and_a_change() -> None:
    key = crypt.load_key(KEY)
    other = crypt.load_key({"DBSNAP_ENCRYPTION_KEY": "another key long enough"})
    assert key.id != other.id and key.id == crypt.load_key(KEY).id
    data = os.urandom(2 * crypt.CHUNK + 100)
    blob = encrypt(data, key)
    with pytest.raises(IntegrityError):
        decrypt(blob, other)
    with pytest.raises(IntegrityError):  # the payload of another file (or snapshot) under the same key
        decrypt(blob, key, label="s/another-file")
    chunk = crypt.CHUNK + crypt.TAG
    head = len(crypt.MAGIC) + crypt.SALT
    with pytest.raises(IntegrityError):  # cut at a chunk boundary: the last chunk flag is missing
        decrypt(blob[: head + chunk], key)
    with pytest.raises(IntegrityError):
        decrypt(blob[:-1], key)
    flipped = bytearray(blob)
    flipped[head + 10] ^= 1
    with pytest.raises(IntegrityError):
        decrypt(bytes(flipped), key)
    swapped = blob[:head] + blob[head + chunk : head + 2 * chunk] + blob[head : head + chunk] + blob[head + 2 * chunk :]
    with pytest.raises(IntegrityError):
        decrypt(swapped, key)


def test_a_key_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("short")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than"):
        crypt.load_key({"DBSNAP_ENCRYPTION_KEY_FILE": str(f)})
    f.write_text("long enough to be a key, but readable by all")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        crypt.load_key({"DBSNAP_ENCRYPTION_KEY_FILE": str(f)})
    assert crypt.load_key({}) is None


# -- multipart transfers -------------------------------------------------------------------------------------------


def fake_snapshot(folder: Path, name: str, size: int) -> Snapshot:
    folder.mkdir(parents=True)
    data = os.urandom(size)
    (folder / "db-default.x.zst").write_bytes(data)
    files = {"db-default.x.zst": {"bytes": size, "sha256": hashlib.sha256(data).hexdigest()}}
    manifest = {"name": name, "created_at": "2026-01-01T00:00:00Z", "files": files, "manifest_sha256": "x" * 64}
    return Snapshot(name=name, path=folder, manifest=manifest)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_payload_of_several_parts_goes_up_and_comes_back_whole(
    s3_server: S3Server, tmp_path: Path, encrypted: bool
) -> None:
    size = 2 * PART + 12345
    snap = fake_snapshot(tmp_path / "local", "big", size)
    bucket = Bucket(s3_server.bucket, endpoint=s3_server.endpoint, env=s3_server.env)
    prefix = s3_server.remote().split("/", 3)[3]
    rstore = RemoteStore(bucket, prefix, "test")
    key = crypt.load_key(KEY) if encrypted else None
    seen: list[int] = []
    _, sent = rstore.push(snap, key, lambda label, total: seen.append)
    assert sent and sum(seen) == (crypt.encrypted_size(size) if encrypted else size)
    assert [s.name for s in rstore.list()] == ["big"]
    staged = tmp_path / "staged"
    staged.mkdir()
    rstore.pull_into(rstore.get("big"), staged, key)
    assert (staged / "db-default.x.zst").read_bytes() == (snap.path / "db-default.x.zst").read_bytes()
    assert json.loads((staged / "manifest.json").read_text()) == snap.manifest
