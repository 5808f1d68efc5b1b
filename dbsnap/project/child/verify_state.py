"""Reset's verification, run with ``manage.py shell -c``: migration history against the files on disk (Django's
MigrationLoader) and model tables against the database, for database alias ALIAS. Prints MARK and one JSON
document.

Squashed migrations: Django records the keys a squash ``replaces`` (not the squash itself) when it applies one,
and those keys may name files long deleted or even another app label (social-auth-app-django's ``social_django``
replaces ``default.*``). Every key in any loaded migration's ``replaces`` is known history, never stale; what is
unapplied is decided on the graph the loader built (replaced nodes already folded into their squash).
"""

import json

from django.apps import apps
from django.db import connections, router
from django.db.migrations.loader import MigrationLoader

alias = "@ALIAS@"
conn = connections[alias]
loader = MigrationLoader(conn, ignore_no_migrations=True)
disk = set(loader.disk_migrations)
replaced = {tuple(k) for m in loader.disk_migrations.values() for k in (m.replaces or [])}
applied = set(loader.applied_migrations)
tables = set(conn.introspection.table_names())
needed = {
    m._meta.db_table
    for m in apps.get_models(include_auto_created=True)
    if m._meta.managed and not m._meta.proxy and router.allow_migrate_model(alias, m)
}
print(
    "@MARK@"
    + json.dumps(
        {
            "stale": sorted(map(list, applied - disk - replaced)),
            "unapplied": sorted(map(list, set(loader.graph.nodes) - applied)),
            "missing_tables": sorted(needed - tables),
        }
    )
)
