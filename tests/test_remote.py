"""Snapshots on a remote (a real SeaweedFS S3 server): whole and verified, encrypted, concurrent, pruned.

Every test pushes to a prefix of its own in the session server's bucket (``s3_server`` in conftest.py). The main
suite keeps the SQLite round trip, the corrupted object and the wrong key; the kills are ``sweep``, PostgreSQL,
concurrency and prune ``slow``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import Project, S3Server

REMOTE_FILES = {"manifest.json"}


def remote_env(s3: S3Server, url: str, **extra: str) -> dict:
    return {**s3.env, "DBSNAP_REMOTE": url, **extra}


def keys(s3: S3Server, url: str, under: str) -> list[str]:
    """The object keys under ``under`` of the remote ``url``, relative to the remote's prefix."""
    prefix = url.split("/", 3)[3] + "/"
    return [k[len(prefix) :] for k in s3.keys(s3.bucket, prefix + under)]


def names(p: Project, env: dict) -> list[str]:
    return [s["name"] for s in json.loads(p.ok("list", "--remote", "--json", env=env).stdout)]


def local_names(p: Project, store: Path | None = None) -> list[str]:
    """The committed snapshots of the store: folders with a manifest (read directly, to spare a dbsnap run)."""
    root = store or p.store
    return sorted(x.name for x in root.iterdir() if (x / "manifest.json").is_file()) if root.is_dir() else []


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def staged_debris(p: Project, store: Path | None = None) -> list[str]:
    tmp = (store or p.store) / ".tmp"
    return sorted(x.name for x in tmp.iterdir()) if tmp.is_dir() else []


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("pg", marks=pytest.mark.slow)])
def test_push_delete_pull_rollback_gives_the_exact_state_back(request, engine: str, s3_server: S3Server) -> None:
    shop: Project = request.getfixturevalue(f"{engine}_shop")
    env = remote_env(s3_server, s3_server.remote())
    shop.ok("save", "before")
    state, files = shop.fingerprint(), shop.migration_files()
    out = shop.ok("push", "before", env=env).stdout
    assert "pushed before" in out
    listing = shop.ok("list", "--remote", "--json", env=env).stdout
    assert [s["name"] for s in json.loads(listing)] == ["before"]
    shop.ok("delete", "before", "--yes")
    assert local_names(shop) == []
    shop.sql("DELETE FROM orders_orderitem")
    (shop.root / "catalog" / "migrations" / "0099_stray.py").write_text("# a stray migration\n")

    shop.ok("pull", "before", env=env)
    assert local_names(shop) == ["before"]
    shop.ok("rollback", "before", "--yes")
    assert shop.fingerprint() == state
    assert shop.migration_files() == files
    # No AWS secret anywhere in what dbsnap printed or stored.
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in listing
    manifest = (shop.store / "before" / "manifest.json").read_text()
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in manifest


@pytest.mark.sweep
@pytest.mark.parametrize("point", ["remote.push-after-payload", "remote.push-before-manifest"])
def test_a_killed_push_leaves_no_snapshot_and_the_next_push_cleans_up(
    sqlite_shop: Project, s3_server: S3Server, point: str
) -> None:
    url = s3_server.remote()
    env = remote_env(s3_server, url)
    sqlite_shop.ok("save", "s1")
    killed = sqlite_shop.dbsnap("push", "s1", env={**env, "DBSNAP_FAULT": point})
    assert killed.returncode == -9, killed.stderr
    assert names(sqlite_shop, env) == []
    debris = keys(s3_server, url, "s1/")
    assert debris and not any(k.endswith("/manifest.json") for k in debris)

    sqlite_shop.ok("push", "s1", env=env)
    assert names(sqlite_shop, env) == ["s1"]
    now = keys(s3_server, url, "s1/")
    uploads = {k.split("/")[1] for k in now if not k.endswith("/manifest.json")}
    assert len(uploads) == 1, f"the killed push's upload folder was not removed: {now}"
    assert not set(debris) & set(now)


@pytest.mark.sweep
def test_a_killed_pull_leaves_nothing_in_the_store(sqlite_shop: Project, s3_server: S3Server) -> None:
    env = remote_env(s3_server, s3_server.remote())
    sqlite_shop.ok("save", "s1")
    sqlite_shop.ok("push", "s1", env=env)
    sqlite_shop.ok("delete", "s1", "--yes")
    killed = sqlite_shop.dbsnap("pull", "s1", env={**env, "DBSNAP_FAULT": "remote.pull-after-payload"})
    assert killed.returncode == -9, killed.stderr
    assert local_names(sqlite_shop) == []
    assert staged_debris(sqlite_shop)  # the half pull is in .tmp/, where no command looks for snapshots
    sqlite_shop.ok("pull", "s1", env=env)
    assert local_names(sqlite_shop) == ["s1"]
    assert staged_debris(sqlite_shop) == []
    sqlite_shop.ok("verify", "s1")


def test_a_corrupted_or_forged_object_on_the_remote_is_refused(
    sqlite_shop: Project, s3_server: S3Server, tmp_path: Path
) -> None:
    url = s3_server.remote()
    env = remote_env(s3_server, url)
    sqlite_shop.ok("save", "s1")
    sqlite_shop.ok("push", "s1", env=env)
    teammate = tmp_path / "teammate-store"  # another machine's store, pulling
    c, bucket, prefix = s3_server.client(), s3_server.bucket, url.split("/", 3)[3] + "/"
    payload = prefix + next(k for k in keys(s3_server, url, "s1/") if k.endswith(".zst") and "/db-" in k)
    original = c.get_object(Bucket=bucket, Key=payload)["Body"].read()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    c.put_object(Bucket=bucket, Key=payload, Body=bytes(damaged))

    proc = sqlite_shop.dbsnap("--store", str(teammate), "pull", "s1", env=env)
    assert proc.returncode == 6, proc.stderr
    assert "fails its checksum" in proc.stderr and len(errors(proc.stderr)) == 1
    assert local_names(sqlite_shop, teammate) == [] and staged_debris(sqlite_shop, teammate) == []

    # A forged remote manifest (its object checksums updated to match the damage) is caught by the snapshot's
    # own checksums; a changed snapshot manifest by its manifest_sha256.
    c.put_object(Bucket=bucket, Key=payload, Body=original)
    key = prefix + "s1/manifest.json"
    doc = json.loads(c.get_object(Bucket=bucket, Key=key)["Body"].read())
    doc["snapshot"]["note"] = "forged"
    c.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    proc = sqlite_shop.dbsnap("--store", str(teammate), "pull", "s1", env=env)
    assert proc.returncode == 6, proc.stderr
    assert "modified after the snapshot was taken" in proc.stderr
    assert local_names(sqlite_shop, teammate) == [] and staged_debris(sqlite_shop, teammate) == []


@pytest.mark.slow  # main-suite budget: make test-faults runs it
def test_encrypted_push_needs_the_same_key_to_pull(sqlite_shop: Project, s3_server: S3Server, tmp_path: Path) -> None:
    url = s3_server.remote()
    key_file = tmp_path / "remote.key"
    key_file.write_text("correct horse battery staple, the team's key\n")
    key_file.chmod(0o600)
    env = remote_env(s3_server, url, DBSNAP_ENCRYPTION_KEY_FILE=str(key_file))
    sqlite_shop.ok("save", "s1")
    local = {p.name: p.read_bytes() for p in (sqlite_shop.store / "s1").iterdir() if p.suffix == ".zst"}
    out = sqlite_shop.ok("push", "s1", env=env).stdout
    assert "encrypted with key" in out
    c, prefix = s3_server.client(), url.split("/", 3)[3] + "/"
    for k in keys(s3_server, url, "s1/"):
        fname = k.rsplit("/", 1)[1]
        if fname in local:
            body = c.get_object(Bucket=s3_server.bucket, Key=prefix + k)["Body"].read()
            assert body.startswith(b"DBSNAPE1") and local[fname][:64] not in body
    listed = json.loads(sqlite_shop.ok("list", "--remote", "--json", env=env).stdout)
    assert listed[0]["encrypted_with"]

    teammate = tmp_path / "teammate-store"
    for bad in ({"DBSNAP_ENCRYPTION_KEY": "another key entirely, not the team's"}, {}):
        wrong = {**remote_env(s3_server, url), **bad}
        proc = sqlite_shop.dbsnap("--store", str(teammate), "pull", "s1", env=wrong)
        assert proc.returncode == 6, proc.stderr
        assert len(errors(proc.stderr)) == 1 and "encrypted" in errors(proc.stderr)[0]
        assert local_names(sqlite_shop, teammate) == [] and staged_debris(sqlite_shop, teammate) == []

    sqlite_shop.ok("--store", str(teammate), "pull", "s1", env=env)
    assert {p.name: p.read_bytes() for p in (teammate / "s1").iterdir() if p.suffix == ".zst"} == local


@pytest.mark.slow
def test_two_concurrent_pushes_of_one_name_one_wins(sqlite_shop: Project, s3_server: S3Server, tmp_path: Path) -> None:
    env = remote_env(s3_server, s3_server.remote())
    other = tmp_path / "other-store"
    sqlite_shop.ok("save", "nightly", "--note", "from here")
    sqlite_shop.ok("--store", str(other), "save", "nightly", "--note", "from elsewhere")
    # Both pass the "already there?" check, upload, then race for the manifest.
    slow = {**env, "DBSNAP_FAULT": "remote.push-before-manifest:sleep", "DBSNAP_FAULT_SECONDS": "2"}
    a = sqlite_shop.start("push", "nightly", env=slow)
    b = sqlite_shop.start("--store", str(other), "push", "nightly", env=slow)
    results = [(a.wait(60), a.communicate()), (b.wait(60), b.communicate())]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(err for code, (_, err) in results if code == 2)
    assert "finished first" in loser
    listed = json.loads(sqlite_shop.ok("list", "--remote", "--json", env=env).stdout)
    assert [s["name"] for s in listed] == ["nightly"]
    winner_note = "from here" if results[0][0] == 0 else "from elsewhere"
    assert listed[0]["note"] == winner_note


@pytest.mark.slow
def test_remote_prune_applies_the_retention_policy(sqlite_shop: Project, s3_server: S3Server) -> None:
    env = remote_env(s3_server, s3_server.remote())
    for n in ("a", "b", "c"):
        sqlite_shop.ok("save", n, *(["--pin"] if n == "a" else []))
    sqlite_shop.ok("push", "a", "b", "c", env=env)
    # Pushing again sends nothing: remote snapshots are write-once, and these are identical.
    assert "already on" in sqlite_shop.ok("push", "a", env=env).stdout
    dry = sqlite_shop.ok("prune", "--remote", "--keep-last", "1", "--dry-run", env=env)
    assert "dry run" in dry.stdout and names(sqlite_shop, env) == ["a", "b", "c"]
    sqlite_shop.ok("prune", "--remote", "--keep-last", "1", "--yes", env=env)
    assert names(sqlite_shop, env) == ["a", "c"]  # a is pinned
    assert local_names(sqlite_shop) == ["a", "b", "c"]  # the local store is not touched
    sqlite_shop.ok("delete", "a", "--remote", "--force", "--yes", env=env)
    assert names(sqlite_shop, env) == ["c"]


def grow_sqlite(p: Project, megabytes: int) -> None:
    """Add incompressible rows, so the snapshot's payload spans several multipart parts."""
    import sqlite3

    with sqlite3.connect(p.root / "db.sqlite3") as c:
        c.execute("CREATE TABLE dbsnap_test_blob (b BLOB)")
        c.executemany("INSERT INTO dbsnap_test_blob VALUES (randomblob(?))", [(1 << 20,)] * megabytes)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.sweep
def test_kill_9_in_the_middle_of_a_multipart_push_and_of_a_pull(sqlite_shop: Project, s3_server: S3Server) -> None:
    import signal

    url = s3_server.remote()
    env = remote_env(s3_server, url)
    prefix = url.split("/", 3)[3] + "/"
    grow_sqlite(sqlite_shop, 48)
    sqlite_shop.ok("save", "big")
    c = s3_server.client()

    def unfinished() -> list[dict]:
        return c.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", [])

    push = sqlite_shop.start("push", "big", env=env)
    wait_for(lambda: unfinished() or push.poll() is not None)
    assert push.poll() is None, "the push ended before a multipart upload was seen"
    push.send_signal(signal.SIGKILL)
    push.wait()
    assert names(sqlite_shop, env) == []
    assert unfinished()
    sqlite_shop.ok("push", "big", env=env)
    assert names(sqlite_shop, env) == ["big"] and unfinished() == []
    uploads = {k.split("/")[1] for k in keys(s3_server, url, "big/") if not k.endswith("/manifest.json")}
    assert len(uploads) == 1

    sqlite_shop.ok("delete", "big", "--yes")
    pull = sqlite_shop.start("pull", "big", env=env)
    tmp = sqlite_shop.store / ".tmp"

    def downloading() -> bool:
        return any(f.is_file() and f.stat().st_size > (8 << 20) for f in tmp.glob("*/*")) if tmp.is_dir() else False

    wait_for(lambda: downloading() or pull.poll() is not None)
    assert pull.poll() is None, "the pull ended before it was seen downloading"
    pull.send_signal(signal.SIGKILL)
    pull.wait()
    assert local_names(sqlite_shop) == []
    sqlite_shop.ok("pull", "big", env=env)
    assert local_names(sqlite_shop) == ["big"] and staged_debris(sqlite_shop) == []
    sqlite_shop.ok("verify", "big")


@pytest.mark.slow
def test_prune_remote_sweeps_killed_pushes_but_never_a_push_in_progress(
    sqlite_shop: Project, s3_server: S3Server
) -> None:
    import os
    import socket

    url = s3_server.remote()
    env = remote_env(s3_server, url)
    prefix = url.split("/", 3)[3] + "/"
    c = s3_server.client()
    sqlite_shop.ok("save", "gone")
    killed = sqlite_shop.dbsnap("push", "gone", env={**env, "DBSNAP_FAULT": "remote.push-after-payload"})
    assert killed.returncode == -9, killed.stderr
    debris = keys(s3_server, url, "gone/")
    assert debris and names(sqlite_shop, env) == []
    # Two pushes in progress: one on this host (a live pid: the test's own), one of another host, leased now.
    live = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2026-01-01T00:00:00+00:00"}
    other = {"host": "elsewhere.example", "pid": 1, "started": "2026-01-01T00:00:00+00:00"}
    for name, lease in (("live", live), ("other", other)):
        c.put_object(
            Bucket=s3_server.bucket, Key=f"{prefix}{name}/u-0123456789abcdef/lease.json", Body=json.dumps(lease)
        )

    dry = sqlite_shop.ok("prune", "--remote", "--keep-last", "5", "--dry-run", env=env)
    assert "would remove 1 unfinished upload(s)" in dry.stderr and keys(s3_server, url, "gone/") == debris
    done = sqlite_shop.ok("prune", "--remote", "--keep-last", "5", "--yes", env=env)
    assert "removed 1 unfinished upload(s) of killed pushes: gone/u-" in done.stderr
    assert keys(s3_server, url, "gone/") == []
    assert c.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", []) == []
    assert keys(s3_server, url, "live/") == ["live/u-0123456789abcdef/lease.json"]
    assert keys(s3_server, url, "other/") == ["other/u-0123456789abcdef/lease.json"]


@pytest.mark.slow
def test_remotes_from_settings_py_dbsnap_override_pyproject_name_by_name(
    sqlite_shop: Project, s3_server: S3Server
) -> None:
    team, team_b = s3_server.remote(), s3_server.remote()
    (sqlite_shop.root / "pyproject.toml").write_text(
        f'[tool.dbsnap.remotes]\ndefault = "team"\nteam = {{ url = "{team}", endpoint = "{s3_server.endpoint}" }}\n'
    )
    with open(sqlite_shop.root / "shopsite" / "settings.py", "a") as f:
        remotes = {"default": "team_b", "team_b": {"URL": team_b, "ENDPOINT": s3_server.endpoint}}
        f.write(f"\nDBSNAP = {{'REMOTES': {remotes!r}}}\n")
    # No DBSNAP_REMOTE and no AWS_ENDPOINT_URL*: the remote and its endpoint come from settings.py.
    env = {k: v for k, v in s3_server.env.items() if not k.startswith("AWS_ENDPOINT")}
    sqlite_shop.ok("save", "s1")
    out = sqlite_shop.ok("push", "s1", env=env).stdout
    assert f"pushed s1 to {team_b}" in out
    assert keys(s3_server, team_b, "s1/manifest.json") and not keys(s3_server, team, "")
    sqlite_shop.ok("push", "s1", "--remote", "team", env=env)  # pyproject's remote, by name
    assert keys(s3_server, team, "s1/manifest.json")
    bad = sqlite_shop.dbsnap("push", "s1", "--remote", "team-b", env=env)
    assert bad.returncode == 2 and "unknown remote 'team-b'" in bad.stderr and "team_b" in bad.stderr


def doctor_lines(p: Project, env: dict) -> dict[str, dict]:
    proc = p.dbsnap("doctor", "--json", env=env)
    return {
        c["name"]: c
        for c in json.loads(proc.stdout)["checks"]
        if c["name"] in ("remote", "remote write", "encryption key")
    }


@pytest.mark.slow
def test_doctor_checks_the_default_remote_and_the_encryption_key(
    sqlite_shop: Project, s3_server: S3Server, tmp_path: Path
) -> None:
    import socket

    url = s3_server.remote()
    key = tmp_path / "key"
    key.write_text("a long enough passphrase\n")
    key.chmod(0o600)
    good = doctor_lines(sqlite_shop, remote_env(s3_server, url, DBSNAP_ENCRYPTION_KEY_FILE=str(key)))
    assert [(n, c["status"]) for n, c in good.items()] == [
        ("remote", "ok"),
        ("remote write", "ok"),
        ("encryption key", "ok"),
    ]
    assert keys(s3_server, url, "") == []  # the write probe is removed again
    assert doctor_lines(sqlite_shop, {**s3_server.env}) == {}  # no remote configured: no line

    # (Wrong credentials are not tried: the test server runs without S3 identities and takes any.)
    nobucket = doctor_lines(sqlite_shop, remote_env(s3_server, "s3://no-such-bucket-dbsnap/x"))
    assert (
        nobucket["remote"]["status"] == "fail"
        and "create the bucket no-such-bucket-dbsnap" in nobucket["remote"]["fix"]
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    down = doctor_lines(sqlite_shop, remote_env(s3_server, url, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{closed}"))
    assert down["remote"]["status"] == "fail" and "endpoint" in down["remote"]["fix"]
    key.chmod(0o644)
    loose = doctor_lines(sqlite_shop, remote_env(s3_server, url, DBSNAP_ENCRYPTION_KEY_FILE=str(key)))
    assert loose["encryption key"]["status"] == "fail" and loose["encryption key"]["fix"]


def test_a_clone_only_snapshot_is_refused_by_push_and_export(
    sqlite_shop: Project, s3_server: S3Server, tmp_path: Path
) -> None:
    from dbsnap.store.snapshots import manifest_digest

    url = s3_server.remote()
    sqlite_shop.ok("save", "kept")
    path = sqlite_shop.store / "kept" / "manifest.json"
    m = json.loads(path.read_text())
    m["databases"]["default"]["payload"] = None  # what a clone-only snapshot (issue 14) records
    m["manifest_sha256"] = manifest_digest(m)
    path.write_text(json.dumps(m, indent=2))
    for args in (["push", "kept"], ["export", "kept", "--to", str(tmp_path / "kept.sqlite3")]):
        proc = sqlite_shop.dbsnap(*args, env=remote_env(s3_server, url))
        assert proc.returncode == 2, proc.stderr
        assert len(errors(proc.stderr)) == 1 and "dbsnap save --from kept" in proc.stderr
    assert keys(s3_server, url, "") == [] and not (tmp_path / "kept.sqlite3").exists()
