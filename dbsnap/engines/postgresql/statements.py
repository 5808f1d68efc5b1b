"""SQL that dbsnap runs on PostgreSQL, in one place."""

from __future__ import annotations

# Drops every object a Django project (or anything else) may have created, keeping the public schema itself
# with its owner and grants. Extensions first (their objects go with them), then other schemas, then public.
DROP_ALL_SQL = r"""
DO $dbsnap$
DECLARE r record;
BEGIN
  FOR r IN SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' LOOP
    EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', r.extname);
  END LOOP;
  FOR r IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%' LOOP
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname);
  END LOOP;
  -- An earlier CASCADE may already have dropped an object listed here: check it still exists first.
  FOR r IN SELECT c.oid, c.relkind FROM pg_class c
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND NOT c.relispartition
           ORDER BY c.relkind = 'S' LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = r.oid);
    EXECUTE format('DROP %s %s CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                     WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.oid::regclass);
  END LOOP;
  FOR r IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_proc WHERE oid = r.oid);
    EXECUTE format('DROP ROUTINE %s CASCADE', r.oid::regprocedure);
  END LOOP;
  FOR r IN SELECT t.oid FROM pg_type t
           WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('c', 'd', 'e', 'r', 'm')
             AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_type WHERE oid = r.oid);
    EXECUTE format('DROP TYPE %s CASCADE', r.oid::regtype);
  END LOOP;
END
$dbsnap$;
"""
