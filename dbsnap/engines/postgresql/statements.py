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
  -- What a schema-by-schema drop misses: objects of public that are not relations, routines or types, and the
  -- database-wide ones (publications, large objects, event triggers, casts). Left behind, they make a fresh
  -- history pass on the live database that fails on an empty one, and the transaction-mode restore's replayed
  -- CREATE statements abort on them.
  FOR r IN SELECT oid FROM pg_ts_config WHERE cfgnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP TEXT SEARCH CONFIGURATION %s CASCADE', r.oid::regconfig);
  END LOOP;
  FOR r IN SELECT oid FROM pg_ts_dict WHERE dictnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP TEXT SEARCH DICTIONARY %s CASCADE', r.oid::regdictionary);
  END LOOP;
  FOR r IN SELECT tmplname FROM pg_ts_template WHERE tmplnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP TEXT SEARCH TEMPLATE public.%I CASCADE', r.tmplname);
  END LOOP;
  FOR r IN SELECT prsname FROM pg_ts_parser WHERE prsnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP TEXT SEARCH PARSER public.%I CASCADE', r.prsname);
  END LOOP;
  FOR r IN SELECT collname FROM pg_collation WHERE collnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP COLLATION IF EXISTS public.%I CASCADE', r.collname);
  END LOOP;
  FOR r IN SELECT conname FROM pg_conversion WHERE connamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP CONVERSION IF EXISTS public.%I CASCADE', r.conname);
  END LOOP;
  FOR r IN SELECT o.oid FROM pg_operator o WHERE o.oprnamespace = 'public'::regnamespace LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_operator WHERE oid = r.oid);
    EXECUTE format('DROP OPERATOR %s CASCADE', r.oid::regoperator);
  END LOOP;
  FOR r IN SELECT f.opfname, a.amname FROM pg_opfamily f JOIN pg_am a ON a.oid = f.opfmethod
           WHERE f.opfnamespace = 'public'::regnamespace LOOP
    EXECUTE format('DROP OPERATOR FAMILY IF EXISTS public.%I USING %I CASCADE', r.opfname, r.amname);
  END LOOP;
  FOR r IN SELECT pubname FROM pg_publication LOOP
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', r.pubname);
  END LOOP;
  FOR r IN SELECT evtname FROM pg_event_trigger
           WHERE evtowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
              OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) LOOP
    EXECUTE format('DROP EVENT TRIGGER IF EXISTS %I CASCADE', r.evtname);
  END LOOP;
  -- User-made casts (the built-in ones have OIDs below FirstNormalObjectId; an extension's went with it).
  FOR r IN SELECT c.castsource::regtype AS s, c.casttarget::regtype AS t FROM pg_cast c WHERE c.oid >= 16384 LOOP
    EXECUTE format('DROP CAST IF EXISTS (%s AS %s) CASCADE', r.s, r.t);
  END LOOP;
  PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
END
$dbsnap$;
"""

# The objects a model or a migration's SQL may need before any table exists, and that makemigrations never
# writes: extensions (with their schema), collations and text-search dictionaries and configurations of public.
# One row each, in creation order (an extension's requirements and a configuration's dictionaries come first):
# kind, name, and the facts needed to create it again (JSON). Members of an extension are left out: the
# extension brings them back.
PREREQUISITES_SQL = r"""
WITH members AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
SELECT kind, name, facts FROM (
  SELECT 1 AS ord, e.oid::bigint AS o, 'extension' AS kind, e.extname::text AS name,
         jsonb_build_object('schema', n.nspname) AS facts
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname <> 'plpgsql'
  UNION ALL
  SELECT 2, c.oid::bigint, 'collation', c.collname::text,
         to_jsonb(c) - 'oid' - 'collnamespace' - 'collowner' - 'collname'
    FROM pg_collation c
   WHERE c.collnamespace = 'public'::regnamespace
     AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_collation'::regclass AND m.objid = c.oid)
  UNION ALL
  SELECT 3, d.oid::bigint, 'text search dictionary', d.dictname::text,
         jsonb_build_object('sql', format('CREATE TEXT SEARCH DICTIONARY public.%I (TEMPLATE = %I.%I%s)',
           d.dictname, tn.nspname, t.tmplname, coalesce(', ' || d.dictinitoption, '')),
           'drop', format('DROP TEXT SEARCH DICTIONARY IF EXISTS public.%I', d.dictname))
    FROM pg_ts_dict d JOIN pg_ts_template t ON t.oid = d.dicttemplate JOIN pg_namespace tn ON tn.oid = t.tmplnamespace
   WHERE d.dictnamespace = 'public'::regnamespace
     AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_ts_dict'::regclass AND m.objid = d.oid)
  UNION ALL
  SELECT 4, c.oid::bigint, 'text search configuration', c.cfgname::text,
         jsonb_build_object('sql', jsonb_build_array(
           format('CREATE TEXT SEARCH CONFIGURATION public.%I (PARSER = %I.%I)', c.cfgname, pn.nspname, p.prsname)
         ) || coalesce((
             SELECT jsonb_agg(format('ALTER TEXT SEARCH CONFIGURATION public.%I ADD MAPPING FOR %s WITH %s',
                                     c.cfgname, x.alias, x.dicts) ORDER BY x.alias)
               FROM (SELECT t.alias, string_agg(format('%I.%I', dn.nspname, d.dictname), ', ' ORDER BY m.mapseqno)
                              AS dicts
                       FROM pg_ts_config_map m
                       JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
                       JOIN pg_ts_dict d ON d.oid = m.mapdict JOIN pg_namespace dn ON dn.oid = d.dictnamespace
                      WHERE m.mapcfg = c.oid GROUP BY t.alias) x), '[]'::jsonb),
           'drop', format('DROP TEXT SEARCH CONFIGURATION IF EXISTS public.%I', c.cfgname))
    FROM pg_ts_config c JOIN pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_namespace pn ON pn.oid = p.prsnamespace
   WHERE c.cfgnamespace = 'public'::regnamespace
     AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_ts_config'::regclass AND m.objid = c.oid)
) x ORDER BY ord, o
"""

# -- the schema description (dbsnap.schema) -------------------------------------------------------------------
# Tables of every schema but the system ones, named "table" in public and "schema.table" elsewhere; objects that
# belong to an extension are the extension's and are left out.
_USER_REL = r"""
  c.relnamespace NOT IN (SELECT oid FROM pg_namespace
                          WHERE nspname IN ('information_schema', 'pg_catalog', 'pg_toast') OR nspname LIKE 'pg\_temp%'
                             OR nspname LIKE 'pg\_toast\_temp%')
  AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_class'::regclass AND x.objid = c.oid
                  AND x.deptype = 'e')
"""
_REL_NAME = "CASE WHEN c.relnamespace = 'public'::regnamespace THEN c.relname::text ELSE c.oid::regclass::text END"

SCHEMA_SQL = {
    "tables": f"SELECT {_REL_NAME} FROM pg_class c WHERE c.relkind IN ('r', 'p') AND {_USER_REL}",
    "columns": f"""
SELECT {_REL_NAME}, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity::text || a.attgenerated::text,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN co.collname::text ELSE '' END,
       EXISTS (SELECT 1 FROM pg_depend dp JOIN pg_class s ON s.oid = dp.objid AND s.relkind = 'S'
                WHERE dp.classid = 'pg_class'::regclass AND dp.refobjid = a.attrelid AND dp.refobjsubid = a.attnum
                  AND dp.deptype = 'a')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND {_USER_REL}""",
    "constraints": f"""
SELECT {_REL_NAME}, pg_get_constraintdef(k.oid) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE c.relkind IN ('r', 'p') AND {_USER_REL}""",
    # The index's name is taken out of its definition: names differ between histories, meaning does not.
    "indexes": f"""
SELECT {_REL_NAME}, replace(pg_get_indexdef(i.indexrelid), ' INDEX ' || quote_ident(ic.relname) || ' ON ', ' INDEX ON ')
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE c.relkind IN ('r', 'p') AND {_USER_REL}""",
    # A sequence is what owns it (an identity or serial column) and how it counts, not its name.
    "sequences": f"""
SELECT coalesce((SELECT format('owned by %s.%s', CASE WHEN t.relnamespace = 'public'::regnamespace
                        THEN t.relname::text ELSE t.oid::regclass::text END, a.attname)
                   FROM pg_depend dp JOIN pg_class t ON t.oid = dp.refobjid
                   JOIN pg_attribute a ON a.attrelid = dp.refobjid AND a.attnum = dp.refobjsubid
                  WHERE dp.classid = 'pg_class'::regclass AND dp.objid = c.oid AND dp.deptype IN ('a', 'i')
                  LIMIT 1), {_REL_NAME})
       || format(': %s start %s increment %s min %s max %s%s', format_type(s.seqtypid, NULL), s.seqstart,
                 s.seqincrement, s.seqmin, s.seqmax, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE {_USER_REL}""",
    "views": f"""
SELECT CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, {_REL_NAME}, pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relkind IN ('v', 'm') AND {_USER_REL}""",
    "functions": r"""
SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)) FROM pg_proc p
 WHERE p.prokind IN ('f', 'p') AND p.pronamespace NOT IN (SELECT oid FROM pg_namespace
                                  WHERE nspname IN ('information_schema', 'pg_catalog') OR nspname LIKE 'pg\_%')
   AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid
                   AND x.deptype = 'e')""",
    "triggers": f"""
SELECT {_REL_NAME} || '.' || t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND {_USER_REL}""",
}

# What --carry-sql writes into the generated RunSQL migration: the functions, views and triggers that
# describe_schema lists under extras (same names), with the statements that create and drop them, in an order
# they can be created in (functions before the views and triggers that use them; each kind by creation order).
_OWN_PROC = r"""
  p.prokind IN ('f', 'p') AND p.pronamespace NOT IN (SELECT oid FROM pg_namespace
                                  WHERE nspname IN ('information_schema', 'pg_catalog') OR nspname LIKE 'pg\_%')
   AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid
                   AND x.deptype = 'e')"""

OBJECT_DEFINITIONS_SQL = f"""
SELECT kind, name, create_sql, drop_sql FROM (
  SELECT 1 AS ord, p.oid::bigint AS o, 'function' AS kind, p.oid::regprocedure::text AS name,
         pg_get_functiondef(p.oid) AS create_sql,
         format('DROP %s IF EXISTS %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                p.oid::regprocedure) AS drop_sql
    FROM pg_proc p WHERE {_OWN_PROC}
  UNION ALL
  SELECT 2, c.oid::bigint, CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, {_REL_NAME},
         format('CREATE %s %s AS %s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                c.oid::regclass, pg_get_viewdef(c.oid)),
         format('DROP %s IF EXISTS %s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                c.oid::regclass)
    FROM pg_class c WHERE c.relkind IN ('v', 'm') AND {_USER_REL}
  UNION ALL
  SELECT 3, t.oid::bigint, 'trigger', {_REL_NAME} || '.' || t.tgname, pg_get_triggerdef(t.oid),
         format('DROP TRIGGER IF EXISTS %I ON %s', t.tgname, c.oid::regclass)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND {_USER_REL}
) x ORDER BY ord, o
"""
