"""Discovery, run in the project's own interpreter (``python -c``, in the project root): DATABASES, DEBUG, and the
project's own apps with their migration modules and folders. Prints MARK and one JSON document.

Fast path: no ``django.setup()``. Importing every app's models (admin alone pulls in forms and templates) took
0.3 s of the 0.35 s this child cost on the example project; DATABASES only needs the settings module, and an app's
label, path and migrations module only need its AppConfig (Django's own first phase of ``apps.populate``). Apps
whose top-level package lives outside the project root or inside installed packages are not ours and are not
imported at all. Anything unusual (an app package that imports models, a failing AppConfig) falls back to the
full ``django.setup()`` and Django's own registry and MigrationLoader.
"""

import importlib.util
import json
import os
import sys

sys.path.insert(0, os.getcwd())

import django
from django.conf import settings

ROOT = os.path.realpath(os.getcwd())
VENDORED = ("site-packages", "dist-packages")


def plain(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)


def maybe_own(entry):
    spec = importlib.util.find_spec(entry.split(".")[0])
    if spec is None:
        return True  # let Django say what is wrong with it
    locs = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for loc in locs:
        real = os.path.realpath(loc)
        if (real == ROOT or real.startswith(ROOT + os.sep)) and not any(v in real.split(os.sep) for v in VENDORED):
            return True
    return False


def migrations_dir(module):
    if module is None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except Exception:
        return None
    if spec is not None and spec.submodule_search_locations:
        return next(iter(spec.submodule_search_locations))
    return None


def fast_apps():
    from django.apps import AppConfig

    found = []
    for entry in settings.INSTALLED_APPS:
        if not maybe_own(entry):
            continue
        app = AppConfig.create(entry)
        # MigrationLoader.migrations_module without importing the loader (and every model with it)
        modules = settings.MIGRATION_MODULES
        module = modules[app.label] if app.label in modules else app.name + ".migrations"
        found.append(
            {"label": app.label, "name": app.name, "path": app.path, "module": module, "dir": migrations_dir(module)}
        )
    return found


def setup_apps():
    django.setup()
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    found = []
    for app in apps.get_app_configs():
        module, _explicit = MigrationLoader.migrations_module(app.label)
        found.append(
            {"label": app.label, "name": app.name, "path": app.path, "module": module, "dir": migrations_dir(module)}
        )
    return found


out = {"django_version": django.get_version(), "debug": bool(settings.DEBUG), "databases": {}}
for alias, cfg in settings.DATABASES.items():
    out["databases"][alias] = {k: plain(cfg.get(k)) for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    out["databases"][alias]["OPTIONS"] = {k: plain(v) for k, v in (cfg.get("OPTIONS") or {}).items()}
try:
    out["apps"] = fast_apps()
except Exception:
    out["apps"] = setup_apps()
print("@MARK@" + json.dumps(out))
