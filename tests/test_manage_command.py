"""``python manage.py dbsnap ...`` (the ``dbsnap.django`` app): the same commands, options, exit codes and --json
as the ``dbsnap`` script, run in-process on the settings manage.py loaded, on both example projects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Project, cookie_project, fresh_pg_database

SITES_0004 = "cookiesite/contrib/sites/migrations/0004_alter_options_ordering_domain.py"


def install_app(p: Project) -> Project:
    """Add ``dbsnap.django`` to the shop example's INSTALLED_APPS, as its README says."""
    with open(p.root / "shopsite" / "settings.py", "a") as f:
        f.write('\nINSTALLED_APPS += ["dbsnap.django"]\n')
    return p


def managed(p: Project, *args: str):
    return p.manage("dbsnap", *args, check=False)


def ok(p: Project, *args: str) -> dict:
    res = managed(p, *args, "--json")
    assert res.returncode == 0, f"manage.py dbsnap {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


@pytest.mark.slow  # main-suite budget: make test-faults runs it
def test_same_cli_as_the_script(sqlite_shop: Project) -> None:
    p = install_app(sqlite_shop)
    before = p.fingerprint()
    saved = ok(p, "save", "s1")
    assert saved["name"] == "s1"
    assert ok(p, "list") == json.loads(p.ok("list", "--json").stdout)
    assert ok(p, "info") == json.loads(p.ok("info", "--json").stdout)
    # Exit codes and messages are the script's: unknown snapshot (3), usage error (2).
    script, django = p.dbsnap("show", "nope"), managed(p, "show", "nope")
    assert (django.returncode, django.stderr) == (script.returncode, script.stderr) and script.returncode == 3
    usage = managed(p, "rollback")
    assert usage.returncode == 2 and "Usage: manage.py dbsnap rollback" in usage.stderr
    # manage.py's own --settings is applied by manage.py and not passed on.
    assert managed(p, "--settings=shopsite.settings", "list").returncode == 0
    p.sql("DELETE FROM orders_orderitem")
    rolled = ok(p, "rollback", "s1", "--yes")
    assert rolled["snapshot"] == "s1" and p.fingerprint() == before


@pytest.mark.slow
def test_reset_via_manage(sqlite_shop: Project) -> None:
    p = install_app(sqlite_shop)
    reset = ok(p, "reset", "--yes")
    assert reset["safety_snapshot"].startswith("pre-reset-") and reset["migrations"]["orders"] == ["0001_initial.py"]
    assert ok(p, "status")["in_sync"] is True
    assert managed(p, "reset", "--app", "nosuchapp", "--yes").returncode == 2


def test_in_process_without_a_discovery_child(sqlite_shop: Project) -> None:
    """The settings manage.py loaded are used as they are: an interpreter the discovery child cannot run changes
    nothing (the script, which needs that child, cannot find the databases and says why)."""
    p = install_app(sqlite_shop)
    p.env["DBSNAP_PYTHON"] = str(p.root / "no-such-python")
    script = p.dbsnap("info", "--json")
    assert script.returncode == 4 and "shopsite.settings could not be imported here" in script.stderr
    res = managed(p, "info", "--json")
    assert res.returncode == 0 and res.stderr == ""
    info = json.loads(res.stdout)
    assert info["discovery"] == "settings" and info["settings_module"] == "shopsite.settings"
    # call_command: the same command from code; a failure is a CommandError carrying dbsnap's exit code.
    code = (
        "import django, json; django.setup(); from django.core.management import call_command, CommandError\n"
        "call_command('dbsnap', 'info', '--json')\n"
        "try:\n    call_command('dbsnap', 'show', 'nope')\nexcept CommandError as e:\n    print('exit', e.returncode)\n"
    )
    env = {**p.env, "DJANGO_SETTINGS_MODULE": "shopsite.settings", "PYTHONPATH": str(p.root)}
    run = subprocess.run([sys.executable, "-c", code], cwd=p.root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.rstrip().endswith("exit 3") and '"discovery": "settings"' in run.stdout
    assert "error: snapshot 'nope' not found" in run.stderr


def cookie_via_manage(p: Project) -> None:
    p.manage("migrate", "-v0")
    assert ok(p, "save", "c1")["name"] == "c1"
    assert [s["name"] for s in ok(p, "list")] == ["c1"]
    sites = (p.root / SITES_0004).read_bytes()
    (p.root / SITES_0004).unlink()
    ok(p, "rollback", "c1", "--yes")
    assert (p.root / SITES_0004).read_bytes() == sites
    reset = ok(p, "reset", "--yes")
    assert [k["app"] for k in reset["kept"]] == ["sites"] and sorted(reset["migrations"]) == ["notes", "users"]
    assert (p.root / SITES_0004).read_bytes() == sites
    assert ok(p, "status")["in_sync"] is True


@pytest.mark.slow
def test_cookiecutter_project_via_manage_sqlite(tmp_path) -> None:
    cookie_via_manage(cookie_project(tmp_path / "cookiesite"))


@pytest.mark.slow
def test_cookiecutter_project_via_manage_postgresql(tmp_path, pg_server) -> None:
    with fresh_pg_database() as name:
        cookie_via_manage(cookie_project(tmp_path / "cookiesite", name))
