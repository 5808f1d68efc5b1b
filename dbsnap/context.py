"""The context every verb runs in: settings, the project (discovered lazily), the store and the reporter."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .engines import engine_for, preload
from .engines.base import Engine
from .errors import ConfigError
from .project.databases import Database
from .project.discovery import Project, discover, find_root, load_env, loaded_root, settings_mention_dbsnap
from .report import Reporter
from .settings import (
    Settings,
    read_pyproject,
    resolve_bounds,
    resolve_jobs,
    resolve_lock_timeout,
    resolve_store,
    use_django_settings,
)
from .store.confine import DatabaseRule, Rules
from .store.snapshots import Store


@dataclass
class Context:
    """Resolved once per command. ``project`` runs Django discovery (a child process) on first use only."""

    settings: Settings = field(default_factory=Settings)
    reporter: Reporter = field(default_factory=Reporter)
    command: str = "dbsnap"

    def __post_init__(self) -> None:
        self._project: Project | None = None
        self._engines: dict[str, Engine] = {}
        explicit = self.settings.project if self.settings.project is not None else loaded_root()
        try:
            self.root: Path | None = find_root(explicit)
        except ConfigError:
            if explicit is not None:
                raise
            self.root = None  # commands that only read the store work outside a project
        self.env = load_env(self.root) if self.root else dict(os.environ)
        if self.root is not None:
            self._read_django_settings()
        self.store = Store(resolve_store(self.settings.store, self.env, self.root))
        self.lock_timeout = resolve_lock_timeout(self.settings.lock_timeout, self.env, self.root)
        self.jobs = resolve_jobs(self.settings.jobs, self.env, self.root)
        self.bounds = resolve_bounds(self.env, self.root)

    def _read_django_settings(self) -> None:
        """settings.py ``DBSNAP`` for dbsnap's own configuration, before anything reads it: in-process under
        ``manage.py dbsnap``; by the ``dbsnap`` script only when the settings folder assigns DBSNAP (the
        discovery it needs is then the one the command uses). A project whose settings fail here still runs
        the commands that need no project; the ones that do get the error."""
        assert self.root is not None
        use_django_settings(self.root, None)
        if loaded_root() != self.root and not settings_mention_dbsnap(self.root):
            return
        try:
            project = self._discover()
        except ConfigError:
            return
        use_django_settings(self.root, project.dbsnap_settings)

    def _discover(self) -> Project:
        if self._project is None:
            if self.root is None:
                find_root(None)  # raises the "no Django project found" error
            preload()
            self._project = discover(self.root, compose_table=read_pyproject(self.root).get("compose"))
            if self._project.fallback:
                self.reporter.warn(
                    f"{self._project.fallback}; using "
                    + ("DATABASE_URL" if self.env.get("DATABASE_URL") else "DB_* variables")
                    + " and migration folders found by scanning the project"
                )
        return self._project

    @property
    def project(self) -> Project:
        return self._discover()

    def rules(self) -> Rules:
        """The confinement rules of this project (discovered now) and store; see ``store/confine.py``."""
        if self.root is None:
            return Rules(root=None, folders=None, store=self.store.root)
        p = self.project
        return Rules(
            root=p.root,
            folders=[f.path for f in p.folders],
            store=self.store.root,
            databases=[DatabaseRule(db.alias, db.kind, db.name) for db in p.databases.values()],
        )

    def databases(self) -> list[Database]:
        return self.project.select(self.settings.databases)

    def engine(self, db: Database) -> Engine:
        """One engine per alias for the whole command, so that its facts (server version, tools, restore mode)
        are looked up once, not again by the plan, the safety snapshot and the restore."""
        if db.alias not in self._engines:
            engine = engine_for(db, self.project.env, self.project.compose)
            engine.bounds = self.bounds
            self._engines[db.alias] = engine
        return self._engines[db.alias]
