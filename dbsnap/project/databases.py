"""The databases of a project: one DATABASES entry (or DATABASE_URL / DB_* variables) as a :class:`Database`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import ConfigError

# Django ENGINE strings -> dbsnap engine kind. Third-party wrappers are matched by suffix below.
ENGINE_KINDS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.postgresql_psycopg2": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
}


@dataclass
class Database:
    """One entry of DATABASES, reduced to what dbsnap needs. ``password`` never leaves the process."""

    alias: str
    kind: str
    name: str
    host: str = ""
    port: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    options: dict = field(default_factory=dict)
    django_engine: str = ""

    def public(self) -> dict:
        """Everything but the password, for output and manifests."""
        d = asdict(self)
        d.pop("password")
        d["engine"] = d.pop("kind")
        d["options"] = {k: v for k, v in self.options.items() if "pass" not in k.lower()}
        return d

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"{self.alias}: sqlite {self.name}"
        where = f"{self.host or 'localhost'}:{self.port or 'default'}"
        return f"{self.alias}: {self.kind} {self.name} on {where} as {self.user or '(default user)'}"


def engine_kind(engine: str) -> str:
    """Map a Django ENGINE string to an engine kind; ConfigError for engines dbsnap cannot handle."""
    if engine in ENGINE_KINDS:
        return ENGINE_KINDS[engine]
    low = engine.lower()
    for needle, kind in (
        ("postgis", "postgresql"),
        ("postgres", "postgresql"),
        ("sqlite", "sqlite"),
        ("spatialite", "sqlite"),
        ("mysql", "mysql"),
        ("mariadb", "mysql"),
    ):
        if needle in low:
            return kind
    raise ConfigError(f"unsupported database engine {engine!r}")


def database_from_config(root: Path, alias: str, engine: str, cfg: dict) -> Database:
    kind = engine_kind(engine)
    name = str(cfg.get("NAME") or "")
    if kind == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigError(
                f"database {alias!r}: SQLite database {name or '(empty)'!r} is not a file dbsnap can copy"
            )
        p = Path(name).expanduser()
        name = str(p if p.is_absolute() else (root / p).resolve())
    return Database(
        alias=alias,
        kind=kind,
        name=name,
        host=str(cfg.get("HOST") or ""),
        port=str(cfg.get("PORT") or ""),
        user=str(cfg.get("USER") or ""),
        password=str(cfg.get("PASSWORD") or ""),
        options=dict(cfg.get("OPTIONS") or {}),
        django_engine=engine,
    )


def databases_from_env(root: Path, env: dict[str, str]) -> dict[str, Database]:
    url = env.get("DATABASE_URL")
    if url:
        u = urlparse(url)
        scheme = u.scheme.split("+")[0]
        if scheme in ("sqlite", "spatialite"):
            path = unquote(u.path[1:] if u.path.startswith("//") else u.path)
            return {
                "default": database_from_config(
                    root,
                    "default",
                    "sqlite",
                    {"NAME": path.lstrip("/") if not u.path.startswith("//") else path},
                )
            }
        cfg = {
            "NAME": unquote(u.path.lstrip("/")),
            "USER": unquote(u.username or ""),
            "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "",
            "PORT": str(u.port or ""),
        }
        return {"default": database_from_config(root, "default", scheme, cfg)}
    if env.get("DB_NAME"):
        engine = env.get("DB_ENGINE") or "postgresql"
        cfg = {
            "NAME": env["DB_NAME"],
            "USER": env.get("DB_USER", ""),
            "PASSWORD": env.get("DB_PASSWORD", ""),
            "HOST": env.get("DB_HOST", ""),
            "PORT": env.get("DB_PORT", ""),
        }
        return {"default": database_from_config(root, "default", engine, cfg)}
    return {}
