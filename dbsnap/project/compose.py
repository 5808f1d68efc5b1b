"""docker compose projects: which service runs what, and how dbsnap reaches them from the host.

Configured by ``[tool.dbsnap] compose = { db = "db", web = "web" }`` (optional keys: ``file``, ``command``,
``python``), or by ``DBSNAP_COMPOSE_DB`` / ``DBSNAP_COMPOSE_WEB`` / ``DBSNAP_COMPOSE_FILE`` /
``DBSNAP_COMPOSE_COMMAND`` (the environment wins). Then:

- the PostgreSQL client tools run inside the db service, ``docker compose exec -T -e PGPASSWORD ... db pg_dump``:
  the dump streams through the exec's stdout, the password goes by name only (``-e NAME`` makes the docker client
  read the value from its own environment and send it to the daemon over its socket, never in any argv);
- manage.py steps and the settings discovery run inside the web service, in the container folder the host's
  project folder is bind-mounted at (read from the running container's mounts), and the paths it reports are
  mapped back to the host;
- dbsnap's own connections (psycopg) go to the db container's address on its compose network (``docker
  inspect``) when the settings name the db service as HOST, which resolves only inside the compose network.
  Why an address and not a stdio tunnel through ``docker compose exec``: a psycopg session must stay open while
  pg_dump uses its exported snapshot, and dbsnap opens a dozen sessions per command; a tunnel would cost one
  exec (about 0.3 s) per session and a forwarding program inside the db image. The address is reachable where the
  engine runs on this machine (Linux); with a remote engine or Docker Desktop, publish the port and set HOST.

``docker compose`` (v2) is used when present, else ``docker-compose`` (v1); both take the same arguments here.
Nothing here imports Django. A compose file in the project with no configuration is only *shown* by ``info``
(:func:`detect`): a project whose dbsnap runs inside the web container sees the same file, and must not start
calling docker from there.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import procs
from ..errors import ConfigError, ExternalError

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
KEYS = {"db", "web", "file", "command", "python"}
# What the PostgreSQL tools get from dbsnap's environment, by name (``exec -e NAME``), values never in argv.
PG_NAMES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGAPPNAME", "PGCONNECT_TIMEOUT", "PGSSLMODE")


@dataclass
class Compose:
    """A compose project dbsnap drives from the host. ``command`` is ``docker compose`` or ``docker-compose``."""

    root: Path
    db: str | None
    web: str | None
    command: list[str]
    files: list[Path]
    python: str = "python"
    source: str = ""
    _containers: dict[str, dict] = field(default_factory=dict, repr=False)

    # -- running compose ----------------------------------------------------------------------------------

    def base(self) -> list[str]:
        return [*self.command, *(a for f in self.files for a in ("-f", str(f)))]

    def _run(self, args: list[str], what: str, timeout: float = 60) -> str:
        argv = [*self.base(), *args]
        try:
            proc = procs.run(
                argv, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout
            )
        except FileNotFoundError as e:
            raise ExternalError(f"{what}: {self.command[0]} not found", hint=_HINT_INSTALL) from e
        except subprocess.TimeoutExpired as e:
            raise ExternalError(f"{what}: {' '.join(self.command)} did not answer within {timeout:.0f} s") from e
        if proc.returncode != 0:
            raise ExternalError(f"{what}: {explain(proc.stderr, proc.returncode)}", hint=hint_for(proc.stderr))
        return proc.stdout

    def container(self, service: str) -> dict:
        """``docker inspect`` of the service's running container (looked up once per command); ExternalError,
        one line, when the engine, the compose file, the service or its container is not there."""
        if service not in self._containers:
            what = f"compose service {service!r}"
            ids = self._run(["ps", "-q", service], what).split()
            if not ids:
                raise ExternalError(
                    f"{what} is not running (no container)",
                    hint=f"start it: {' '.join(self.command)} up -d {service}",
                )
            docker = docker_command(self.command)
            try:
                proc = procs.run(
                    [docker, "inspect", ids[0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60
                )
            except FileNotFoundError as e:
                raise ExternalError(f"{what}: {docker} not found", hint=_HINT_INSTALL) from e
            if proc.returncode != 0:
                raise ExternalError(f"{what}: {explain(proc.stderr, proc.returncode)}")
            info = json.loads(proc.stdout)[0]
            if not (info.get("State") or {}).get("Running"):
                raise ExternalError(
                    f"{what} is not running ({(info.get('State') or {}).get('Status', 'stopped')})",
                    hint=f"start it: {' '.join(self.command)} up -d {service}",
                )
            self._containers[service] = info
        return self._containers[service]

    def exec_argv(
        self, service: str, argv: list[str], env_names: tuple[str, ...] = (), workdir: str | None = None
    ) -> list[str]:
        """The command line that runs ``argv`` in ``service``: stdin and stdout passed through (``-T``: no tty,
        binary safe), exit code passed back. ``env_names`` are forwarded by name: docker reads each value from
        the environment dbsnap starts it with."""
        out = [*self.base(), "exec", "-T"]
        for name in env_names:
            out += ["-e", name]
        if workdir:
            out += ["-w", workdir]
        return [*out, service, *argv]

    # -- the db service -----------------------------------------------------------------------------------

    def db_address(self) -> str:
        """The db container's IP address on its (first) compose network, for dbsnap's own connections."""
        assert self.db is not None
        nets = (self.container(self.db).get("NetworkSettings") or {}).get("Networks") or {}
        for net in nets.values():
            if net.get("IPAddress"):
                return net["IPAddress"]
        raise ExternalError(f"compose service {self.db!r} has no network address (network_mode: host or none?)")

    def routes(self, host: str) -> bool:
        """Whether a database HOST is the db service (its name, or its container's name or aliases): a name that
        resolves only inside the compose network, so dbsnap's own connections must be routed to the container."""
        if self.db is None:
            return False
        if host == self.db:
            return True
        if not host or "." in host or ":" in host or host.startswith("/"):
            return False
        try:
            info = self.container(self.db)
        except ExternalError:
            return False
        names = {info.get("Name", "").lstrip("/")}
        for net in ((info.get("NetworkSettings") or {}).get("Networks") or {}).values():
            names.update(net.get("Aliases") or [])
        return host in names

    # -- the web service ----------------------------------------------------------------------------------

    def web_workdir(self) -> str:
        """Where the host's project folder is inside the web container (its bind mount); ConfigError when the
        project is not bind-mounted (then the container's migration files are not the host's)."""
        assert self.web is not None
        container_path, _ = self._mount()
        return container_path

    def _mount(self) -> tuple[str, Path]:
        assert self.web is not None
        best: tuple[str, Path] | None = None
        for m in self.container(self.web).get("Mounts") or []:
            if m.get("Type") != "bind" or not m.get("Source"):
                continue
            src = Path(m["Source"]).resolve()
            if src == self.root or src in self.root.parents:
                rel = self.root.relative_to(src).as_posix()
                dest = str(PurePosixPath(m["Destination"]) / rel) if rel != "." else m["Destination"]
                if best is None or len(str(src)) > len(str(best[1])):
                    best = (dest, src)
        if best is None:
            raise ConfigError(
                f"compose service {self.web!r} does not bind-mount the project folder {self.root}",
                hint="add a volume such as './:/app' to the service, so dbsnap and the container see the same files",
            )
        return best

    def to_host(self, container_path: str) -> str:
        """A path inside the web container mapped to the host (unchanged when outside the project's mount)."""
        dest, _ = self._mount()
        p = PurePosixPath(container_path)
        try:
            rel = p.relative_to(dest)
        except ValueError:
            return container_path
        return str(self.root / rel) if str(rel) != "." else str(self.root)

    def public(self) -> dict:
        return {
            "db": self.db,
            "web": self.web,
            "command": " ".join(self.command),
            "files": [str(f) for f in self.files],
            "source": self.source,
        }


_HINT_INSTALL = "install docker and compose (docker compose v2, or docker-compose v1)"


def explain(stderr: str, rc: int) -> str:
    """One line for a failed docker/compose call, naming the usual causes in plain words."""
    text = " ".join(ln.strip() for ln in (stderr or "").splitlines() if ln.strip())
    low = text.lower()
    if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
        return "the container engine is not running (cannot connect to the Docker daemon)"
    if "no such service" in low:
        m = re.search(r"no such service:?\s*(\S+)", text, re.I)
        return f"no such service{': ' + m.group(1).strip(':') if m else ''} in the compose file"
    if "no configuration file provided" in low or "can't find a suitable configuration file" in low:
        return "compose file not found (compose.yaml or docker-compose.yml in the project, or compose.file)"
    if "is not running" in low:
        return text.split(". ")[0]
    return text[-300:] if text else f"exit code {rc}"


def hint_for(stderr: str) -> str | None:
    low = (stderr or "").lower()
    if "docker daemon" in low:
        return "start the engine (e.g. dockerd, or the Docker service) and try again"
    if "no such service" in low:
        return "check [tool.dbsnap] compose = { db = ..., web = ... } against the services of the compose file"
    return None


def docker_command(command: list[str]) -> str:
    """The docker client that goes with the compose command (``docker`` itself for v2)."""
    return command[0] if Path(command[0]).name == "docker" else (shutil.which("docker") or "docker")


def _compose_command(raw: str | None, env: dict[str, str]) -> list[str]:
    if raw:
        return shlex.split(raw)
    path = env.get("PATH")
    docker = shutil.which("docker", path=path)
    if docker:
        try:
            proc = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
            if proc.returncode == 0:
                return [docker, "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    v1 = shutil.which("docker-compose", path=path)
    if v1:
        return [v1]
    return [docker or "docker", "compose"]


def configured(root: Path, env: dict[str, str], table: object) -> Compose | None:
    """The compose configuration of the project at ``root`` (``[tool.dbsnap] compose`` overlaid by the
    ``DBSNAP_COMPOSE_*`` variables), or None when dbsnap is not told to use compose."""
    if env.get("DBSNAP_COMPOSE", "").lower() in ("0", "off", "no", "false"):
        return None
    if Path("/.dockerenv").exists() and not any(
        shutil.which(c, path=env.get("PATH")) for c in ("docker", "docker-compose")
    ):
        # Inside a container with no docker client (dbsnap installed in the web image, the same pyproject.toml
        # bind-mounted): the services are this machine itself, a plain local run.
        return None
    cfg: dict = {}
    source = ""
    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError('[tool.dbsnap] compose must be a table, e.g. compose = { db = "db", web = "web" }')
        unknown = sorted(set(table) - KEYS)
        if unknown:
            raise ConfigError(f"[tool.dbsnap] compose: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
        cfg.update({k: v for k, v in table.items() if v not in (None, "")})
        source = "pyproject.toml [tool.dbsnap] compose"
    for key in sorted(KEYS):
        value = env.get(f"DBSNAP_COMPOSE_{key.upper()}")
        if value:
            cfg[key] = value
            source = source or "DBSNAP_COMPOSE_* variables"
    if not cfg.get("db") and not cfg.get("web"):
        return None
    for key in ("db", "web"):
        if key in cfg and (not isinstance(cfg[key], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cfg[key])):
            raise ConfigError(f"compose {key} service {cfg[key]!r}: not a service name")
    files: list[Path] = []
    if cfg.get("file"):
        raw = cfg["file"]
        for part in raw if isinstance(raw, list) else str(raw).split(":"):
            p = Path(str(part)).expanduser()
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                raise ExternalError(f"compose file not found: {p}", hint="check compose.file / DBSNAP_COMPOSE_FILE")
            files.append(p)
    elif not env.get("COMPOSE_FILE") and detect_file(root) is None:
        raise ExternalError(
            f"compose file not found in {root} (looked for {', '.join(COMPOSE_FILES)})",
            hint="set compose.file in [tool.dbsnap] or DBSNAP_COMPOSE_FILE",
        )
    return Compose(
        root=root,
        db=cfg.get("db"),
        web=cfg.get("web"),
        command=_compose_command(cfg.get("command"), env),
        files=files,
        python=str(cfg.get("python") or "python"),
        source=source,
    )


def detect_file(root: Path) -> Path | None:
    return next((root / n for n in COMPOSE_FILES if (root / n).is_file()), None)


def detect(root: Path) -> dict | None:
    """What ``info`` shows for a project with a compose file and no compose configuration: the file and its
    service names that look like a database and a web service (a text scan: no YAML parser, no docker)."""
    path = detect_file(root)
    if path is None:
        return None
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    services: list[str] = []
    images: dict[str, str] = {}
    inside, current = False, None
    for line in text.splitlines():
        if re.match(r"^services:\s*$", line):
            inside = True
            continue
        if inside and re.match(r"^\S", line):
            inside = False
        if inside:
            m = re.match(r"^  ([A-Za-z0-9][A-Za-z0-9_.-]*):\s*$", line)
            if m:
                current = m.group(1)
                services.append(current)
            m = re.match(r"^\s+image:\s*['\"]?([^'\"\s]+)", line)
            if m and current:
                images[current] = m.group(1)
    db = next((s for s in services if "postgres" in images.get(s, "") or s in ("db", "postgres", "database")), None)
    web = next((s for s in services if s in ("web", "backend", "app", "django", "api")), None)
    return {"file": path.name, "services": services, "db": db, "web": web}


def on_local_bridge(host: str) -> bool:
    """Whether the IP address ``host`` is on a bridge network of this machine (docker0, a compose network's
    br-*): directly connected (no gateway) through a Linux bridge interface, so the database lives in a container
    here, not on another machine. Read from /proc/net/route; False wherever that is not available."""
    import ipaddress
    import socket
    import struct

    try:
        ip = int(ipaddress.IPv4Address(host))
        rows = Path("/proc/net/route").read_text().splitlines()[1:]
    except (ValueError, OSError):
        return False
    best: tuple[int, str, int] | None = None
    for row in rows:
        cols = row.split()
        if len(cols) < 8:
            continue
        iface, dest, gateway, mask = cols[0], cols[1], cols[2], cols[7]
        to_int = lambda h: struct.unpack("!I", socket.inet_aton(socket.inet_ntoa(struct.pack("<I", int(h, 16)))))[0]  # noqa: E731
        d, g, m = to_int(dest), to_int(gateway), to_int(mask)
        if ip & m == d and (best is None or m > best[0]):
            best = (m, iface, g)
    if best is None or best[2] != 0:
        return False
    return Path("/sys/class/net", best[1], "bridge").is_dir()
