"""Turning results into text for humans or JSON for scripts (stdout carries results only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SchemaDrift
from ..pipelines import prerequisites as carry
from ..pipelines.clone_only import clone_bytes, is_clone_only
from ..report import human_bytes
from ..schema import table as diff_table
from ..store.seal import sealed_by
from ..store.snapshots import Snapshot

if TYPE_CHECKING:
    from ..pipelines.keep_data import KeepDataPlan
    from ..pipelines.rollback import RollbackPlan, RollbackResult
    from ..pipelines.save import SaveResult


def seconds(s: float) -> str:
    """A duration for people: two decimals under 10 s, one above."""
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def snapshot_summary(s: Snapshot) -> dict:
    m = s.manifest
    return {
        "name": s.name,
        "created_at": m.get("created_at"),
        "origin": s.origin,
        "pinned": s.pinned,
        "note": m.get("note", ""),
        "bytes": s.size,
        "databases": {a: {"engine": d.get("engine"), "name": d.get("name")} for a, d in s.databases.items()},
        "migration_files": len(m.get("migrations", {}).get("files", [])),
        "clones": {a: clone_label(d["clone"]) for a, d in s.databases.items() if d.get("clone")},
        "clone_only": is_clone_only(s),
        "clone_bytes": clone_bytes(s),
        "sealed_by": sealed_by(m),
    }


def list_table(snaps: list[Snapshot]) -> str:
    if not snaps:
        return "no snapshots"
    rows = [("NAME", "CREATED (UTC)", "ORIGIN", "SIZE", "DATABASES", "PIN", "CLONE", "SEAL", "NOTE")]
    for s in snaps:
        dbs = ",".join(f"{a}:{d.get('engine')}" for a, d in s.databases.items())
        created = s.created_at.strftime("%Y-%m-%d %H:%M:%S")
        pin = "*" if s.pinned else ""
        clone = "only" if is_clone_only(s) else "yes" if any(d.get("clone") for d in s.databases.values()) else ""
        seal = sealed_by(s.manifest) or "-"
        size = human_bytes(s.size + clone_bytes(s))
        rows.append((s.name, created, s.origin, size, dbs, pin, clone, seal, s.manifest.get("note", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def show_text(s: Snapshot) -> str:
    m = s.manifest
    lines = [
        f"name:        {s.name}",
        f"created:     {m.get('created_at')}",
        f"origin:      {s.origin}",
        f"pinned:      {'yes' if s.pinned else 'no'}",
        f"note:        {m.get('note', '')}",
        f"size:        {human_bytes(s.size)}",
        f"sealed by:   {('key ' + sealed_by(m)) if sealed_by(m) else 'no key (plain checksum only)'}",
        f"project:     {m.get('project', {}).get('root')} ({m.get('project', {}).get('settings_module')})",
        f"git commit:  {m.get('project', {}).get('git_commit') or '-'}",
        f"versions:    dbsnap {m.get('dbsnap_version')}, Django {m.get('django_version')}, "
        f"Python {m.get('python_version')}",
    ]
    for alias, d in s.databases.items():
        counts = (
            "clone-only (no dump, no row counts)"
            if d.get("payload") is None
            else f"{len(d.get('tables') or {})} tables, {sum((d.get('tables') or {}).values())} rows"
        )
        lines.append(
            f"database {alias}: {d.get('engine')} {d.get('name')} (server {d.get('server_version')}), "
            f"{counts}, {len(d.get('migrations', []))} applied migrations"
        )
    for alias, d in s.databases.items():
        if d.get("clone") and d.get("payload") is None:
            lines.append(
                f"clone {alias}: {clone_label(d['clone'])} ({human_bytes(int(d.get('clone_bytes') or 0))}; the "
                "replaced database, kept by rename: 'dbsnap save --from' writes its dump)"
            )
        elif d.get("clone"):
            lines.append(f"clone {alias}: {clone_label(d['clone'])} (server-side copy for a fast rollback)")
    mig = m.get("migrations", {})
    for f in mig.get("folders", []):
        n = sum(1 for x in mig.get("files", []) if x["path"].startswith(f["path"] + "/"))
        lines.append(f"migrations {f['app']}: {f['path']} ({n} files)")
    for fname, meta in sorted(m.get("files", {}).items()):
        lines.append(f"file {fname}: {human_bytes(meta['bytes'])} sha256 {meta['sha256'][:16]}...")
    return "\n".join(lines)


def clone_label(clone: dict) -> str:
    """A clone's name (PostgreSQL) or its kept file (SQLite)."""
    return str(clone.get("name") or clone.get("file"))


def save_text(r: SaveResult) -> str:
    return (
        f"saved {r.snapshot.name}: {human_bytes(r.raw_bytes)} -> {human_bytes(r.stored_bytes)} "
        f"(ratio {r.ratio:.1f}x) in {seconds(r.seconds)}"
    )


def save_json(r: SaveResult) -> dict:
    return snapshot_summary(r.snapshot) | {
        "raw_bytes": r.raw_bytes,
        "stored_bytes": r.stored_bytes,
        "ratio": round(r.ratio, 3),
        "seconds": round(r.seconds, 3),
        "prune_warning": r.prune_warning,
    }


SAFETY_ORIGINS = {"pre-rollback": "taken by a rollback", "pre-reset": "taken by a reset"}


def plan_text(p: RollbackPlan) -> str:
    lines = [f"Roll back to snapshot {p.snapshot.name} (taken {p.snapshot.manifest['created_at']}):"]
    for what, then, now in p.foreign:
        lines.append(f"  OTHER PROJECT: the snapshot's {what} is {then}, this one's is {now} (--other-project)")
    if p.snapshot.origin in SAFETY_ORIGINS:
        note = p.snapshot.manifest.get("note") or "-"
        lines.append(f"  this is the safety snapshot {SAFETY_ORIGINS[p.snapshot.origin]} ({note})")
    for db in p.databases:
        lines.append(f"  replace database {db.describe()}  [{p.modes.get(db.alias)}]")
        for s in p.sessions.get(db.alias, []):
            lines.append(f"    will terminate session: {s}")
    for f in p.folders:
        state = "" if f.exists else " (missing now)"
        lines.append(
            f"  replace {f.path}{state}: {f.to_restore} to restore, {f.to_remove} to remove, {f.to_revert} to revert"
        )
    if (p.snapshot.manifest.get("migrations") or {}).get("none"):
        lines.append(
            "  this snapshot holds no migration folders (imported from a plain dump): it restores the database only"
        )
    for path in p.untouched:
        lines.append(f"  left as it is (not in the snapshot): {path}; its migrations will be unapplied after this")
    if p.consume:
        lines.append("  the snapshot's clone is renamed into place (--consume-clone), then made again")
    if p.keep_safety:
        lines.append("  the replaced database is kept as the safety snapshot (renamed, not dumped)")
    else:
        lines.append(
            "  a safety snapshot of the current state is taken first"
            if p.safety
            else "  NO safety snapshot (--no-safety-snapshot)"
        )
    return "\n".join(lines)


def rollback_text(r: RollbackResult) -> str:
    safety = f"; safety snapshot {r.safety_snapshot}" if r.safety_snapshot else ""
    if r.safety_kept:
        safety += " (clone-only)"
    return (
        f"rolled back to {r.snapshot}: {len(r.databases)} database(s), {len(r.folders)} migration folder(s) "
        f"in {seconds(r.seconds)}{safety}"
    )


def info_text(d: dict) -> str:
    lines = [
        f"project:   {d['project']}",
        f"settings:  {d['settings_module'] or '-'} ({d['discovery']})",
    ]
    if d["fallback_reason"]:
        lines.append(f"fallback:  {d['fallback_reason']}")
    if d["django_version"]:
        lines.append(f"django:    {d['django_version']} (DEBUG={d['debug']})")
    for db in d["databases"]:
        if db["engine"] == "sqlite":
            lines.append(f"database {db['alias']}: sqlite {db['name']}")
        else:
            lines.append(
                f"database {db['alias']}: {db['engine']} {db['name']} on {db['host'] or 'localhost'}:"
                f"{db['port'] or 'default'} user {db['user'] or '-'}"
            )
    for a in d["apps"]:
        moved = "" if a.get("owned", True) else f" (MIGRATION_MODULES {a['module']}; kept, never regenerated)"
        lines.append(f"app {a['app']}: {a['migrations']} ({a['files']} migrations){moved}")
    if not d["apps"]:
        lines.append("apps: no migration folders found in the project")
    for n in d.get("not_managed", []):
        lines.append(f"not managed {n['app']}: {n['module'] or '-'}: {n['reason']}")
    for diff in d.get("differences", []):
        lines.append(f"difference: {diff}")
    lines.append(f"store:     {d['store']} ({d['snapshots']} snapshots)")
    c = d.get("compose")
    if c and c["configured"]:
        where = []
        if c.get("db"):
            routed = f", dbsnap connects to {c['db_address']}" if c.get("db_address") else ""
            where.append(f"pg_dump/pg_restore/psql in service {c['db']!r}{routed}")
        if c.get("web"):
            where.append(f"manage.py and settings in service {c['web']!r} at {c.get('web_workdir')}")
        lines.append(f"compose:   {'; '.join(where)} ({c['command']}; from {c['source']})")
    elif c:
        db, web = c.get("db"), c.get("web")
        suggestion = ", ".join(f"{k} = {v!r}" for k, v in (("db", db), ("web", web)) if v).replace("'", '"')
        lines.append(
            f"compose:   {c['file']} found (services: {', '.join(c['services']) or '-'}), not used"
            + (f"; to run the tools in it: [tool.dbsnap] compose = {{ {suggestion} }}" if suggestion else "")
        )
    return "\n".join(lines)


def prune_plan_text(plan) -> str:
    """The policy and, per database, every snapshot with its decision; the reasons form one aligned column."""
    lines = [f"policy: {plan.policy.describe()} ({plan.source})"]
    for key, decisions in plan.groups.items():
        kept = sum(1 for d in decisions if d.keep)
        lines.append(f"database {key}: {len(decisions)} snapshots, keep {kept}, remove {len(decisions) - kept}")
        width = max((len(d.name) for d in decisions), default=0)
        for d in decisions:
            lines.append(f"  {'keep  ' if d.keep else 'remove'}  {d.name:<{width}}  {', '.join(d.reasons)}".rstrip())
    return "\n".join(lines)


def prune_text(plan, deleted: list[str], dry_run: bool) -> str:
    lines = [prune_plan_text(plan)]
    if dry_run:
        lines.append("dry run: nothing was deleted")
    elif deleted:
        lines.append(f"deleted {len(deleted)} snapshot(s): {', '.join(deleted)}")
    elif not plan.removals:
        lines.append("nothing to delete")
    return "\n".join(lines)


def prune_json(plan, deleted: list[str], dry_run: bool) -> dict:
    return {
        "policy": plan.policy.describe(),
        "source": plan.source,
        "dry_run": dry_run,
        "databases": {
            k: [{"name": d.name, "keep": d.keep, "reasons": d.reasons} for d in ds] for k, ds in plan.groups.items()
        },
        "deleted": deleted,
    }


def reset_plan_text(p) -> str:
    from ..pipelines.keep_data import KeepDataPlan  # here: only reset needs it (a command's fixed cost)

    if isinstance(p, KeepDataPlan):
        return keep_data_plan_text(p)
    lines = ["Reset plan:"]
    for db in p.databases:
        lines.append(f"  drop every object of {db.describe()}: ALL ITS DATA IS DELETED (the safety snapshot keeps it)")
        for session in p.sessions.get(db.alias, []):
            lines.append(f"    will terminate session: {session}")
    for f in p.folders:
        lines.append(f"  regenerate {f.path} ({f.files} migrations deleted, __init__.py and non-Python files kept)")
    for f in getattr(p, "kept", []):
        lines.append(
            f"  keep {f.path} as it is ({f.app}: not the project's app, its migrations moved here by "
            "MIGRATION_MODULES; regenerating would drop the project's edits to them); migrated as they are"
        )
    if p.carried:
        where = f"{p.folders[0].path}/{carry.NAME}.py" if p.folders else carry.NAME
        lines.append(f"  carried: {', '.join(x.describe() for x in p.carried)}")
        lines.append(f"    (created again by {where}, which the fresh initial migrations depend on)")
    if p.lost:
        lines.append("  operations makemigrations cannot regenerate, LOST by this reset:")
        lines += _lost_lines(p)
    else:
        lines.append("  no RunPython/RunSQL/extension/custom operations in these migrations: none is lost")
    for cmd in p.after:
        lines.append(f"  then: manage.py {' '.join(cmd)}")
    lines.append(f"  safety snapshot first: {p.safety_name} (pinned); any failure rolls back to it")
    return "\n".join(lines)


def _lost_lines(p) -> list[str]:
    return [f"    {op.describe()}{' (carried)' if carry.carried_by(op, p.carried) else ''}" for op in p.lost]


def reset_plan_json(p) -> dict:
    from ..pipelines.keep_data import KeepDataPlan  # here: only reset needs it (a command's fixed cost)

    keep = {}
    if isinstance(p, KeepDataPlan):
        keep = {"keep_data": True, "objects": [{"kind": k, "name": n} for k, n in p.objects], "carry_sql": p.carry_sql}
    return keep | {
        "databases": [db.public() for db in p.databases],
        "apps": [{"app": f.app, "migrations": f.path, "files": f.files} for f in p.folders],
        "kept": [{"app": f.app, "migrations": f.path, "files": f.files} for f in getattr(p, "kept", [])],
        "lost_operations": [
            {
                "app": op.app,
                "file": op.file,
                "line": op.line,
                "operation": op.operation,
                "detail": op.detail,
                "carried": carry.carried_by(op, p.carried),
            }
            for op in p.lost
        ],
        "carried": [{"kind": x.kind, "name": x.name} for x in p.carried],
        "after": [" ".join(c) for c in p.after],
        "safety_snapshot": p.safety_name,
    }


def reset_text(r) -> str:
    total = sum(s for _, s in r.steps)
    files = sum(len(v) for v in r.migrations.values())
    line = (
        f"reset done in {total:.1f} s: {files} fresh migration(s) in {len(r.migrations)} app(s); "
        f"safety snapshot {r.safety_snapshot}"
    )
    if r.carried_file:
        line += f"\ncarried into {r.carried_file}: {', '.join(x.describe() for x in r.carried)}"
    return "\n".join([line, *(f"note: {n}" for n in r.notes)])


def reset_json(p, r) -> dict:
    return reset_plan_json(p) | {
        "steps": [{"step": n, "seconds": round(s, 3)} for n, s in r.steps],
        "migrations": r.migrations,
        "carried": [{"kind": x.kind, "name": x.name} for x in r.carried],
        "carried_file": r.carried_file,
        "notes": r.notes,
    }


def verify_line(r) -> str:
    kind = "deep" if r.deep else "checksums+streams"
    return f"ok      {r.name} ({kind})" if r.ok else f"FAILED  {r.name}: {r.problem}"


# -- reset --keep-data -----------------------------------------------------------------------------------------


def keep_data_plan_text(p: KeepDataPlan) -> str:
    apps = ", ".join(f.app for f in p.folders)
    lines = ["Reset plan (--keep-data: every row is kept, nothing is dropped):"]
    for f in p.folders:
        lines.append(f"  regenerate {f.path} ({f.files} migrations replaced, __init__.py and non-Python files kept)")
    if p.carried:
        where = f"{p.folders[0].path}/{carry.NAME}.py" if p.folders else carry.NAME
        lines.append(f"  carried: {', '.join(x.describe() for x in p.carried)} (by {where})")
    lines.append(
        "  prove first: a scratch database migrated from nothing with the new files must have the schema of "
        + ", ".join(db.alias for db in p.databases)
        + "; if not, every difference is shown and nothing changes (exit 7)"
    )
    for db in p.databases:
        lines.append(f"  then rewrite the history of {db.describe()}: the django_migrations rows of {apps}")
        lines.append("    replaced by the new files' in one transaction (fake-applied; no table or row touched)")
    if p.objects:
        how = "carried by --carry-sql into a generated RunSQL migration" if p.carry_sql else "not carried (--carry-sql)"
        lines.append(f"  database objects no migration regenerates, kept in the database; the new history: {how}:")
        lines += [f"    {kind} {name}" for kind, name in p.objects]
    if p.lost:
        lines.append("  operations of the old history not in the new one (what they made stays in the database):")
        lines += _lost_lines(p)
    lines.append(f"  safety snapshot first: {p.safety_name} (pinned)")
    return "\n".join(lines)


def keep_data_text(r) -> str:
    total = sum(s for _, s in r.steps)
    files = sum(len(v) for v in r.migrations.values())
    rows = ", ".join(f"{a}: {h['deleted']} -> {h['inserted']}" for a, h in r.history.items())
    lines = [
        f"reset --keep-data done in {total:.1f} s: {files} fresh migration(s) in {len(r.migrations)} app(s), "
        f"fake-applied (history rows {rows}); every row kept; safety snapshot {r.safety_snapshot}"
    ]
    if r.carried_file:
        lines.append(f"carried into {r.carried_file}: {', '.join(x.describe() for x in r.carried)}")
    if r.carried_sql_file:
        lines.append(f"carried SQL into {r.carried_sql_file}: {', '.join(r.carried_sql)}")
    if r.uncarried:
        lines.append("not in the new history (kept in the database; --carry-sql writes them into a migration):")
        lines += [f"  {d.kind} {d.object}" for d in r.uncarried]
    return "\n".join([*lines, *(f"note: {n}" for n in r.notes)])


def keep_data_json(p, r) -> dict:
    return reset_json(p, r) | {
        "history": r.history,
        "carried_sql": r.carried_sql,
        "carried_sql_file": r.carried_sql_file,
        "not_carried": [d.to_dict() for d in r.uncarried],
    }


def drift_text(e: SchemaDrift) -> str:
    """The refusal of reset --keep-data as a table per database: what the fresh migrations build vs what is there."""
    out = []
    for alias, diffs in e.differences.items():
        out.append(f"database {alias!r}: {len(diffs)} difference(s) between the fresh migrations and the database")
        out.append(diff_table(diffs, expected="FRESH MIGRATIONS BUILD", actual="DATABASE HAS"))
    return "\n".join(out)


def drift_json(e: SchemaDrift) -> dict:
    return {
        "refused": True,
        "error": e.message,
        "exit_code": e.exit_code,
        "differences": {alias: [d.to_dict() for d in diffs] for alias, diffs in e.differences.items()},
    }
