"""The databases of a project: one DATABASES entry (or DATABASE_URL / DB_* variables) as a :class:`Database`.

``DATABASE_URL`` is parsed by dj-database-url, the parser Django settings themselves use (directly or through
django-environ's own copy of its rules): the fallback reads a URL exactly as such settings would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dj_database_url

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


def parse_database_url(url: str) -> dict:
    """``DATABASE_URL`` as Django's DATABASES entry, the standard way (dj-database-url, what django-environ and most
    settings use); ConfigError (exit 4) for what it cannot parse."""
    try:
        cfg = dj_database_url.parse(url)
    except dj_database_url.UnknownSchemeError as e:
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise ConfigError(
            f"DATABASE_URL has an unknown scheme {scheme!r}",
            hint="use postgres://, postgresql://, pgsql://, postgis:// or sqlite:///",
        ) from e
    except (dj_database_url.ParseError, ValueError) as e:
        raise ConfigError(
            f"DATABASE_URL cannot be parsed: {e}", hint="check the port is a number and special characters are %-quoted"
        ) from e
    return cfg


def databases_from_env(root: Path, env: dict[str, str]) -> dict[str, Database]:
    """The fallback's database (alias ``default``) from ``DATABASE_URL``, else ``DB_*`` variables; empty if neither."""
    url = env.get("DATABASE_URL")
    if url:
        cfg = parse_database_url(url)
        return {"default": database_from_config(root, "default", str(cfg.get("ENGINE") or ""), cfg)}
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


def _where(db: Database) -> str:
    if db.kind == "sqlite":
        return f"sqlite {db.name}"
    return f"{db.kind} {db.name!r} on {db.host or 'localhost'}:{db.port or 'default'}"


def disagreements(
    root: Path, env: dict[str, str], dbs: dict[str, Database], from_env_file: Callable[[str], bool]
) -> list[str]:
    """What the fallback would take from ``DATABASE_URL`` / ``DB_*`` (environment and ``.env``) where it is not the
    ``default`` database the settings give: the settings win, the difference is shown. ``from_env_file(var)`` says
    whether ``var`` came from ``.env`` rather than the process environment."""
    var = "DATABASE_URL" if env.get("DATABASE_URL") else "DB_NAME" if env.get("DB_NAME") else None
    settings_db = dbs.get("default")
    if var is None or settings_db is None:
        return []
    try:
        mine = databases_from_env(root, env)["default"]
    except ConfigError as e:
        return [f"{var} cannot be read ({e.message}); the settings give {_where(settings_db)}: dbsnap uses that"]
    # Host and port only count when the variables give them (the settings may fill in their own defaults).
    same = (
        (mine.kind, mine.name) == (settings_db.kind, settings_db.name)
        and (not mine.host or mine.host == settings_db.host)
        and (not mine.port or mine.port == settings_db.port)
    )
    if same:
        return []
    source = ".env" if from_env_file(var) else "the environment"
    return [
        f"{var} in {source} says {_where(mine)}, but the settings Django loads give {_where(settings_db)}: "
        "dbsnap uses the settings' database, as manage.py does"
    ]
