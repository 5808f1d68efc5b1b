"""No leaks: what a killed run leaves (a full-size clone on the server, a temporary file of an atomic write)
is removed by the next locked run, or, where it cannot be, listed by ``dbsnap doctor`` with the command to drop it.
"""

from __future__ import annotations

import shlex
import signal
import subprocess

import pytest
from conftest import Project
from test_clone import clones

from dbsnap.store.snapshots import Store

# kill -9 of real saves with clones: `make test-faults` (.ci/run) runs them.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["save.after-clone-record", "save.after-dump", "save.before-commit"])
def test_kill9_during_save_clone_then_the_next_locked_command_leaves_no_clone(pg_shop: Project, point: str):
    pg_shop.ok("save", "kept", "--clone")
    kept = clones(pg_shop)
    killed = pg_shop.dbsnap("save", "half", "--clone", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if point != "save.after-clone-record":
        assert len(clones(pg_shop)) == 2  # the killed save's full-size copy is on the server now
    res = pg_shop.ok("pin", "kept")  # any locked command
    assert clones(pg_shop) == kept  # the committed snapshot's clone stays, the stray one is gone
    if point != "save.after-clone-record":
        assert "left on the server by an interrupted save" in res.stderr
    assert list((pg_shop.store / ".tmp").iterdir()) == []
    pg_shop.ok("rollback", "kept", "--yes")  # the kept clone still works


def test_doctor_lists_a_clone_no_record_names_with_the_command_to_drop_it(pg_shop: Project) -> None:
    killed = pg_shop.dbsnap("save", "half", "--clone", env={"DBSNAP_FAULT": "save.after-dump"})
    assert killed.returncode == -signal.SIGKILL
    for record in (pg_shop.store / ".tmp").glob("*.clones"):
        record.unlink()  # as an older dbsnap left it: nothing records the clone
    [(stray, _)] = clones(pg_shop)
    res = pg_shop.dbsnap("doctor")
    assert f"1 clone(s) on the server that no snapshot of this store records: {stray}" in res.stderr + res.stdout
    out = res.stderr + res.stdout
    command = out[out.index("drop with: ") + len("drop with: ") :].splitlines()[0]
    subprocess.run(shlex.split(command), check=True, capture_output=True)
    assert clones(pg_shop) == []


@pytest.mark.parametrize(
    ("argv", "debris"),
    [
        (("rollback", "base", "--yes", "--no-safety-snapshot"), "..journal.json.*.tmp"),  # the journal's first write
        (("pin", "base"), "base/.manifest.json.*.tmp"),  # a manifest rewritten in a snapshot folder
    ],
)
def test_kill9_inside_atomic_write_leaves_no_temp_file(sqlite_shop: Project, argv: tuple, debris: str) -> None:
    sqlite_shop.ok("save", "base")
    killed = sqlite_shop.dbsnap(*argv, env={"DBSNAP_FAULT": "fsutil.atomic-write-before-rename"})
    assert killed.returncode == -signal.SIGKILL
    assert len(list(sqlite_shop.store.glob(debris))) == 1
    sqlite_shop.ok("save", "next")
    assert list(sqlite_shop.store.glob(debris)) == []
    assert [p for p in sqlite_shop.store.rglob("*.tmp") if p.is_file()] == []
    store = Store(sqlite_shop.store)
    for snap in store.list():
        store.verify_checksums(snap)
