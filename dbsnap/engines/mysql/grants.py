"""What the connecting role may do, for ``doctor``: the privileges each mode and step of dbsnap needs.

Read from ``information_schema.USER_PRIVILEGES`` (global grants) and ``SCHEMA_PRIVILEGES`` (schema grants,
whose patterns are matched against the names dbsnap derives); privileges that come through a role that is not
active are not seen, so a missing one is reported as a warning with the grant that fixes it, never as a failure.
"""

from __future__ import annotations

import MySQLdb

from .connection import error_text


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

            def on(schema: str) -> set[str]:
                return {
                    r[0]
                    for r in self.q(
                        conn,
                        "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s "
                        "AND %s LIKE TABLE_SCHEMA",
                        (grantee, schema),
                    )
                }

            scratch = f"{self.db.name[:40]}_dbsnap_new_000000"
            return {"user": who, "global": glob, "live": glob | on(self.db.name), "scratch": glob | on(scratch)}
        except MySQLdb.Error as e:
            from ...errors import ExternalError

            raise ExternalError(f"reading the privileges of the role failed: {error_text(e)}") from e
        finally:
            conn.close()
