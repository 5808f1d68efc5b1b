"""dbsnap's own configuration. Precedence: CLI flag > environment (then ``.env``) > settings.py ``DBSNAP`` >
pyproject ``[tool.dbsnap]`` > default.

``DBSNAP`` in the Django settings takes the same keys as ``[tool.dbsnap]`` (``lock_timeout`` and ``LOCK_TIMEOUT``
are read as ``lock-timeout``; tables such as ``retention`` are dicts), so every key dbsnap knows, now or later, is
read from both: :func:`read_pyproject` is the one place that merges them.
"""

from __future__ import annotations

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, UsageError


@dataclass
class Settings:
    """Resolved settings; paths absolute. ``databases`` empty means every alias in DATABASES."""

    project: Path | None = None
    store: Path | None = None
    databases: tuple[str, ...] = ()
    lock_timeout: float | None = None
    jobs: str | int | None = None  # parallel restore jobs: a number, or None / "auto" / 0 for automatic


@dataclass(frozen=True)
class Bounds:
    """How long dbsnap waits on the database server, in seconds; every wait has one (0 is never "forever")."""

    db_lock_timeout: float = 10.0  # a lock held by another session: lock_timeout, pg_dump --lock-wait-timeout
    statement_timeout: float = 600.0  # one of dbsnap's own queries (catalog reads, row counts)
    terminate_timeout: float = 10.0  # other sessions to end after pg_terminate_backend; an open restore to end


# (setting, environment variable, [tool.dbsnap] key) of each bound
BOUND_SOURCES = (
    ("db_lock_timeout", "DBSNAP_DB_LOCK_TIMEOUT", "db-lock-timeout"),
    ("statement_timeout", "DBSNAP_STATEMENT_TIMEOUT", "statement-timeout"),
    ("terminate_timeout", "DBSNAP_TERMINATE_TIMEOUT", "terminate-timeout"),
)


def resolve_bounds(env: dict[str, str], root: Path | None) -> Bounds:
    """Each bound from the environment (or .env), else ``[tool.dbsnap]``, else its default; UsageError when a
    value is not a positive number of seconds."""
    cfg = read_pyproject(root) if root is not None else {}
    values = {}
    for field_name, var, key in BOUND_SOURCES:
        raw = env.get(var)
        if raw is None:
            raw = cfg.get(key)
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = -1.0
        if not value > 0 or value != value or value == float("inf"):
            raise UsageError(f"invalid {key} {raw!r}: expected a positive number of seconds")
        values[field_name] = value
    return Bounds(**values)


# Uncompressed dump size from which a parallel restore (``pg_restore --jobs``) pays on 2 cores, measured with
# bench/run.py: below it, spooling the dump to a file costs about what the parallel restore saves.
AUTO_JOBS_FROM = 64 << 20
AUTO_JOBS_MAX = 4


# settings.py ``DBSNAP`` per project root, as the settings gave it (registered by the context, which reads them).
_FROM_DJANGO: dict[Path, dict] = {}


def _key(k: object) -> str:
    return str(k).strip().lower().replace("_", "-")


def normalized(values: dict, names: bool = False) -> dict:
    """A ``DBSNAP`` dict with ``[tool.dbsnap]`` spelling: keys lower-case with hyphens, at every level, except
    the names of the ``remotes`` table (``--remote team_b`` must find ``"team_b"`` as written)."""
    out = {}
    for k, v in values.items():
        key = str(k) if names else _key(k)
        out[key] = normalized(v, names=key == "remotes" and not names) if isinstance(v, dict) else v
    return out


def use_django_settings(root: Path, values: dict | None) -> None:
    """Register (or, with None, forget) the ``DBSNAP`` dict of the project at ``root``."""
    root = Path(root).resolve()
    if values:
        _FROM_DJANGO[root] = normalized(values)
    else:
        _FROM_DJANGO.pop(root, None)


def source_of(root: Path, key: str) -> str:
    """Where configuration key ``key`` comes from, for messages: settings.py ``DBSNAP`` or ``[tool.dbsnap]``."""
    if key in _FROM_DJANGO.get(Path(root).resolve(), {}):
        return f"settings.py DBSNAP[{key!r}]"
    return f"pyproject.toml [tool.dbsnap.{key}]"


def read_pyproject(root: Path) -> dict:
    """dbsnap's project configuration: ``[tool.dbsnap]`` of the project's pyproject.toml (empty when absent),
    overlaid key by key by settings.py ``DBSNAP`` when the settings were read (a table such as ``retention``
    merged one level deep: a ``DBSNAP`` key wins over the same key of the table)."""
    base = _read_pyproject_file(root)
    over = _FROM_DJANGO.get(Path(root).resolve())
    if not over:
        return base
    merged = dict(base)
    for k, v in over.items():
        merged[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return merged


def _read_pyproject_file(root: Path) -> dict:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    return data.get("tool", {}).get("dbsnap", {}) or {}


def resolve_store(flag: Path | None, env: dict[str, str], root: Path | None) -> Path:
    """Store location: --store, then DBSNAP_DIR (environment or .env), then pyproject, then ``snapshots`` at the
    project root (whatever the current folder; the current folder only outside any project)."""
    if flag:
        return Path(flag).expanduser().absolute()
    if env.get("DBSNAP_DIR"):
        return Path(env["DBSNAP_DIR"]).expanduser().absolute()
    if root is not None:
        cfg = read_pyproject(root)
        if cfg.get("store"):
            p = Path(str(cfg["store"])).expanduser()
            return p if p.is_absolute() else (root / p).absolute()
    return ((root if root is not None else Path.cwd()) / "snapshots").absolute()


def resolve_lock_timeout(flag: float | None, env: dict[str, str], root: Path | None) -> float:
    if flag is not None:
        return flag
    raw = env.get("DBSNAP_LOCK_TIMEOUT")
    if raw is None and root is not None:
        raw = read_pyproject(root).get("lock-timeout")
    if raw is None:
        return 0.0
    try:
        return float(raw)
    except ValueError as e:
        raise UsageError(f"invalid lock timeout {raw!r}: expected seconds") from e


def resolve_jobs(flag: str | int | None, env: dict[str, str], root: Path | None) -> int | None:
    """Restore jobs: --jobs, then DBSNAP_JOBS (environment or .env), then ``[tool.dbsnap] jobs``; None = "auto"."""
    raw = flag if flag is not None else env.get("DBSNAP_JOBS")
    if raw is None and root is not None:
        raw = read_pyproject(root).get("jobs")
    if raw is None or str(raw).strip().lower() in ("", "auto", "0"):
        return None
    try:
        jobs = int(str(raw).strip())
    except ValueError:
        jobs = -1
    if jobs < 1:
        raise UsageError(f"invalid jobs {raw!r}: expected a number of parallel jobs (1 or more) or 'auto'")
    return jobs


def restore_jobs(configured: int | None, raw_bytes: int) -> int:
    """How many ``pg_restore`` jobs for a dump of ``raw_bytes``: the configured number, else (auto) one per CPU
    (at most AUTO_JOBS_MAX) from AUTO_JOBS_FROM on, and a plain stream below it."""
    if configured is not None:
        return configured
    if raw_bytes < AUTO_JOBS_FROM:
        return 1
    return max(1, min(os.cpu_count() or 1, AUTO_JOBS_MAX))


@dataclass(frozen=True)
class RemoteConfig:
    """One remote: an S3-compatible ``s3://bucket/prefix`` with its endpoint, AWS profile and region (each None
    means "what the standard AWS chain says"). Credentials are never here: they come from the AWS chain."""

    name: str
    url: str
    bucket: str
    prefix: str
    endpoint: str | None = None
    profile: str | None = None
    region: str | None = None
    encrypt: bool = False  # push refuses to send plain payloads to this remote (a key must be configured)

    def public(self) -> dict:
        return {"name": self.name, "url": self.url, "endpoint": self.endpoint, "encrypt": self.encrypt}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket[/prefix]``; the prefix without leading/trailing slashes. UsageError
    for anything else."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise UsageError(f"invalid remote {url!r}: expected s3://bucket/prefix or the name of a configured remote")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if not bucket or not all(c.isalnum() or c in ".-_" for c in bucket):
        raise UsageError(f"invalid remote {url!r}: bad bucket name {bucket!r}")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise UsageError(f"invalid remote {url!r}: the prefix has empty, '.' or '..' parts")
    return bucket, prefix


def remote_tables(root: Path | None, extra: dict | None = None) -> dict:
    """The configured remotes: ``[tool.dbsnap.remotes]`` of pyproject, overridden name by name by settings.py
    ``DBSNAP["REMOTES"]`` (when the settings were read), then by ``extra`` (the same shape from another source).
    String entry ``default`` names the default remote; every table is one remote (``url``, ``endpoint``,
    ``profile``, ``region``, ``encrypt``)."""
    tables: dict = {}
    if root is not None:
        tables.update(_table(_read_pyproject_file(root).get("remotes"), "pyproject.toml [tool.dbsnap.remotes]"))
        django = _FROM_DJANGO.get(Path(root).resolve(), {})
        tables.update(_table(django.get("remotes"), "settings.py DBSNAP['REMOTES']"))
    tables.update(extra or {})
    return tables


def _table(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of remotes (name = {{url = ...}})")
    return value


def _remote_from(name: str, table: object, env: dict[str, str]) -> RemoteConfig:
    if isinstance(table, str):
        table = {"url": table}
    if not isinstance(table, dict) or not isinstance(table.get("url"), str):
        raise ConfigError(f'remote {name!r}: expected a table with url = "s3://bucket/prefix"')
    unknown = sorted(set(table) - {"url", "endpoint", "profile", "region", "encrypt"})
    if unknown:
        raise ConfigError(f"remote {name!r}: unknown setting {unknown[0]!r}")
    try:
        bucket, prefix = parse_s3_url(table["url"])
    except UsageError as e:
        raise ConfigError(f"remote {name!r}: {e.message}") from e
    # The endpoint: the remote's own, else the variables the AWS SDKs read (the S3-specific one first).
    endpoint = table.get("endpoint") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    return RemoteConfig(
        name=name,
        url=table["url"],
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        profile=table.get("profile") or None,
        region=table.get("region") or None,
        encrypt=bool(table.get("encrypt", False)),
    )


def resolve_remote(flag: str | None, env: dict[str, str], root: Path | None, extra: dict | None = None) -> RemoteConfig:
    """The remote to use: --remote (a configured name or an s3:// URL), then DBSNAP_REMOTE (the same), then the
    configured default (``default = "name"``, or the only remote configured). UsageError when there is none."""
    tables = remote_tables(root, extra)
    remotes = {k: v for k, v in tables.items() if k != "default" or not isinstance(v, str)}
    choice = flag or env.get("DBSNAP_REMOTE")
    if not choice:
        default = tables.get("default")
        if isinstance(default, str):
            choice = default
        elif len(remotes) == 1:
            choice = next(iter(remotes))
        else:
            raise UsageError(
                "no remote configured" if not remotes else f"several remotes and no default: {', '.join(remotes)}",
                hint="pass --remote s3://bucket/prefix, set DBSNAP_REMOTE, or configure [tool.dbsnap.remotes] "
                "(or DBSNAP['REMOTES'] in settings.py)",
            )
    if choice.startswith("s3://") or "/" in choice or ":" in choice:
        parse_s3_url(choice)  # a URL of another kind is a usage error, not an unknown name
        return _remote_from(choice, {"url": choice}, env)
    if choice not in remotes:
        raise UsageError(
            f"unknown remote {choice!r}",
            hint=f"configured: {', '.join(remotes)}" if remotes else "give an s3://bucket/prefix URL",
        )
    return _remote_from(choice, remotes[choice], env)
