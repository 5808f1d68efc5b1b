"""Reset's proof, run with ``manage.py shell -c``: migrate database alias ALIAS pointed at the scratch database
NAME (a PostgreSQL database or an SQLite file made by dbsnap) from nothing, with the migration files on disk.
Nothing connects to the live database: the alias is repointed before its first connection. Prints MARK, then
"ok" (or Django's error, on one line, and exits 1)."""

import sys

from django.core.management import call_command
from django.db import connections

alias = "@ALIAS@"
conn = connections[alias]
conn.close()
conn.settings_dict["NAME"] = "@NAME@"
try:
    call_command("migrate", database=alias, interactive=False, verbosity=0, run_syncdb=True)
except Exception as e:  # reported to dbsnap as one line; the traceback would only repeat it
    print("@MARK@" + (" ".join(f"{type(e).__name__}: {e}".split()) or type(e).__name__))
    sys.exit(1)
finally:
    conn.close()
print("@MARK@ok")
