"""What the connecting role may do, for ``doctor``: the privileges each mode and step of dbsnap needs.

Read from ``information_schema.USER_PRIVILEGES`` (global grants) and ``SCHEMA_PRIVILEGES`` (schema grants,
whose patterns are matched against the names dbsnap derives, by the server's own ``LIKE``). Those tables show the
account's own grants only, so the grants of the session's enabled roles (a default role, and the roles it holds:
``information_schema.ENABLED_ROLES``) are read with ``SHOW GRANTS FOR`` each role. A role that is granted but not
enabled gives the session nothing, and is not counted.
"""

from __future__ import annotations

import re

import MySQLdb
import MySQLdb.cursors

from .connection import error_text

# One line of SHOW GRANTS on a whole schema or on everything: GRANT <privileges> ON `pattern`.* | *.* TO ...
_GRANT = re.compile(r"^GRANT (.+?) ON (\*|`((?:[^`]|``)+)`)\.\* TO ")
# A role granted: GRANT `role` TO ... (MySQL 8: GRANT `role`@`host` TO ...)
_ROLE = re.compile(r"^GRANT `((?:[^`]|``)+)`(?:@`([^`]*)`)? TO ")


class GrantsMixin:
    """Privilege facts of :class:`~dbsnap.engines.mysql.engine.MySQLEngine`."""

    def privilege_facts(self) -> dict:
        """``{"user": "u@h", "global": set, "live": set, "scratch": set}``: the privileges the role holds
        globally, on the live schema and on a schema named like dbsnap's scratch ones."""
        conn = self.connect(None)
        try:
            who = self.q(conn, "SELECT CURRENT_USER()")[0][0]
            user, _, host = who.rpartition("@")
            grantee = f"'{user}'@'{host}'"
            glob = {
                r[0]
                for r in self.q(
                    conn, "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s", (grantee,)
                )
            }

            role_global, role_schemas = self._role_grants(conn)
            glob |= role_global

            def on(schema: str) -> set[str]:
                own = {
                    r[0]
                    for r in self.q(
                        conn,
                        "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s "
                        "AND %s LIKE TABLE_SCHEMA",
                        (grantee, schema),
                    )
                }
                for pattern, privileges in role_schemas:
                    if self.q(conn, "SELECT %s LIKE %s", (schema, pattern))[0][0]:
                        own |= privileges
                return own

            scratch = f"{self.db.name[:40]}_dbsnap_new_000000"
            return {
                "user": who,
                "global": glob,
                "live": glob | on(self.db.name),
                "scratch": glob | on(scratch),
                "definers": self._foreign_definers(conn, who),
            }
        except MySQLdb.Error as e:
            from ...errors import ExternalError

            raise ExternalError(f"reading the privileges of the role failed: {error_text(e)}") from e
        finally:
            conn.close()

    def _foreign_definers(self, conn: MySQLdb.Connection, who: str) -> list[str]:
        """Accounts other than ``who`` that define views, triggers, routines or events of the live schema: the
        swap recreates those programs with their definer, which takes SET USER (SUPER on older servers)."""
        name = self.db.name
        found = self.q(
            conn,
            "SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "UNION SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "UNION SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s "
            "UNION SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
            (name, name, name, name),
        )
        return sorted({str(r[0]) for r in found if r[0] and str(r[0]) != who})

    def _role_grants(self, conn: MySQLdb.Connection) -> tuple[set[str], list[tuple[str, set[str]]]]:
        """(global privileges, [(schema pattern, privileges)]) of the session's enabled roles; nothing on a server
        without roles."""
        try:
            cur = conn.cursor(MySQLdb.cursors.DictCursor)
            cur.execute("SELECT * FROM information_schema.ENABLED_ROLES")
            roles = list(cur.fetchall())
        except MySQLdb.Error:
            return set(), []
        if not roles:
            return set(), []
        if self.is_mariadb(conn):
            # The session's own SHOW GRANTS lists every enabled role's grants too, roles granted to roles
            # included (SHOW GRANTS FOR an inner role would need SELECT on the mysql schema).
            lines = self.q(conn, "SHOW GRANTS")
        else:
            # MySQL 8 expands roles only when asked, and roles are accounts (name@host).
            marks = ", ".join(["%s@%s"] * len(roles))
            args = [x for r in roles for x in (r.get("ROLE_NAME"), r.get("ROLE_HOST") or "%")]
            lines = self.q(conn, f"SHOW GRANTS FOR CURRENT_USER() USING {marks}", args)
        glob: set[str] = set()
        schemas: list[tuple[str, set[str]]] = []
        for (line,) in lines:
            if _ROLE.match(str(line)):
                continue  # a role granted: its own grants are listed as well
            m = _GRANT.match(str(line))
            if m is None:
                continue  # a table's or a column's grant
            privileges = {p.strip().upper() for p in m.group(1).split(",")}
            if "ALL" in privileges:
                privileges.add("ALL PRIVILEGES")
            if m.group(2) == "*":
                glob |= privileges
            else:
                schemas.append((m.group(3).replace("``", "`"), privileges))
        return glob, schemas
