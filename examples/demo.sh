#!/usr/bin/env bash
# dbsnap demo: save -> break things -> rollback, on a throwaway copy of examples/shop with SQLite.
#
#   make demo            (or: bash examples/demo.sh)
#
# Needs only python3: no PostgreSQL server. Installs dbsnap into the repository's .venv first if it is missing.
# Everything happens in a temporary folder, removed on exit; the repository is not touched.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"

if [[ ! -x "$VENV/bin/dbsnap" ]]; then
    echo "== $VENV has no dbsnap: installing it (same as 'make venv')"
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e "$REPO[test]"
    touch "$VENV/.installed"
fi

# The demo must run on SQLite whatever the caller's shell or .env says.
unset DB_NAME DB_ENGINE DB_USER DB_PASSWORD DB_HOST DB_PORT DATABASE_URL DJANGO_SETTINGS_MODULE SQLITE_PATH \
    DBSNAP_PROJECT DBSNAP_DIR DBSNAP_LOCK_TIMEOUT DBSNAP_PYTHON DBSNAP_FAULT
export PYTHONDONTWRITEBYTECODE=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dbsnap-demo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

SHOP="$WORK/shop"
cp -R "$REPO/examples/shop" "$SHOP"
rm -rf "$SHOP"/db.sqlite3* "$SHOP/.env" "$SHOP/snapshots"
find "$SHOP" -name __pycache__ -prune -exec rm -rf {} +
cd "$SHOP"

dbsnap() { "$VENV/bin/dbsnap" "$@"; }
python() { "$PY" "$@"; }
run() { # echo the command as a user would type it, then run it
    local shown="" a
    for a in "$@"; do
        [[ "$a" == *" "* ]] && a="\"$a\""
        shown+=" $a"
    done
    printf '\n$%s\n' "$shown"
    "$@"
}
section() { printf '\n=== %s\n' "$*"; }

# One "key value" line per fact: row counts, tables, applied migrations, and every migration file with its hash.
state() {
    "$PY" - <<'EOF'
import hashlib, pathlib, sqlite3

c = sqlite3.connect("db.sqlite3")
for t in ("accounts_user", "catalog_product", "orders_order", "orders_orderitem"):
    print(f"rows:{t}", c.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
print("tables", len(tables))
print("applied-migrations", c.execute("SELECT count(*) FROM django_migrations").fetchone()[0])
for p in sorted(pathlib.Path(".").glob("*/migrations/0*.py")):
    print(f"file:{p.as_posix()}", hashlib.sha256(p.read_bytes()).hexdigest()[:12])
EOF
}

section "1. the example project on SQLite, migrated and seeded (in $SHOP)"
run python manage.py migrate -v0
run python manage.py seed --scale 2
run dbsnap info
state >"$WORK/before.txt"

section "2. snapshot database + migration folders"
run dbsnap save before --note "demo: before breaking things"

section "3. break things"
echo '- delete every order (and its items), add a stray table'
"$PY" -c "
import sqlite3
c = sqlite3.connect('db.sqlite3')
c.execute('DELETE FROM orders_orderitem'); c.execute('DELETE FROM orders_order')
c.execute('CREATE TABLE junk_after_snapshot (x integer)')
c.commit()"
echo '- delete orders/migrations/0002_order_note.py'
rm orders/migrations/0002_order_note.py
echo '- add a bogus catalog/migrations/0003_bogus.py'
cat >catalog/migrations/0003_bogus.py <<'EOF'
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_default_categories")]
    operations = []
EOF
state >"$WORK/broken.txt"
run dbsnap list

section "4. roll back: database and migration folders together"
run dbsnap rollback before --yes
state >"$WORK/after.txt"
run dbsnap list

section "5. before / broken / after"
"$PY" - "$WORK/before.txt" "$WORK/broken.txt" "$WORK/after.txt" <<'EOF'
import sys

def load(path):
    return dict(line.split(" ", 1) for line in open(path).read().splitlines())

before, broken, after = (load(p) for p in sys.argv[1:])
keys = list(before) + [k for k in broken if k not in before] + [k for k in after if k not in before and k not in broken]
width = max(len(k) for k in keys)
print(f"{'':<{width}}  {'before':>12}  {'broken':>12}  {'after':>12}")
for k in keys:
    row = [d.get(k, "-") for d in (before, broken, after)]
    mark = "" if row[0] == row[2] else "   <-- DIFFERS"
    print(f"{k:<{width}}  {row[0]:>12}  {row[1]:>12}  {row[2]:>12}{mark}")
if before != after:
    sys.exit("\ndemo FAILED: the state after the rollback differs from the state before")
print("\nafter == before: rows, tables, applied migrations and migration files are back")
EOF

echo
echo "demo OK"
