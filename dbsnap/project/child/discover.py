"""Discovery, in the project's own interpreter: DATABASES, DEBUG, dbsnap's ``DBSNAP`` settings, and every app whose
migrations might be the project's, with its migration module and folder.

Two ways in, one code: run with ``python -c`` in the project root (``__main__``: it prints MARK and one JSON
document), or imported by ``manage.py dbsnap`` (:mod:`dbsnap.django`), where Django is already configured and
:func:`collect` is called in-process with the settings manage.py loaded.

Fast path: no ``django.setup()``. Importing every app's models (admin alone pulls in forms and templates) took
0.3 s of the 0.35 s this child cost on the example project; DATABASES only needs the settings module, and an app's
label, path and migrations module only need its AppConfig (Django's own first phase of ``apps.populate``). Apps
whose top-level package lives outside the project root or inside installed packages are not ours and are not
imported at all, except those ``MIGRATION_MODULES`` names: an override may move a contrib or third-party app's
migrations into the project (cookiecutter-django's ``sites``). Anything unusual (an app package that imports models, a
failing AppConfig) falls back to the full ``django.setup()`` and Django's own registry and MigrationLoader.
"""

import importlib.util
import json
import os
import sys

import django
from django.conf import settings

VENDORED = ("site-packages", "dist-packages")


def plain(v):
    """``v`` as JSON can carry it: dicts and lists item by item, anything else JSON cannot hold (a Path, a lazy
    string) as its text."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return str(v)


def inside(path, root):
    real = os.path.realpath(path)
    return (real == root or real.startswith(root + os.sep)) and not any(v in real.split(os.sep) for v in VENDORED)


def maybe_own(entry, root):
    spec = importlib.util.find_spec(entry.split(".")[0])
    if spec is None:
        return True  # let Django say what is wrong with it
    locs = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    return any(inside(loc, root) for loc in locs)


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


def describe(app, module, explicit, root):
    return {
        "label": app.label,
        "name": app.name,
        "path": app.path,
        "own": inside(app.path, root),
        "module": module,
        "explicit": explicit,
        "dir": migrations_dir(module),
    }


def fast_apps(root):
    from django.apps import AppConfig

    modules = settings.MIGRATION_MODULES
    entries = list(settings.INSTALLED_APPS)
    own = {i: AppConfig.create(e) for i, e in enumerate(entries) if maybe_own(e, root)}
    # Apps that are not ours matter only when MIGRATION_MODULES names them. Their AppConfig (admin's imports
    # forms, templates and http: 0.3 s) is built for the entries whose default label is such a key; all of them
    # only if that does not account for every key (a custom label, such as wagtail's "wagtailcore").
    keys = set(modules) - {app.label for app in own.values()}
    others = {}
    if keys:
        rest = [i for i in range(len(entries)) if i not in own]
        others = {i: AppConfig.create(entries[i]) for i in rest if entries[i].rsplit(".", 1)[-1] in keys}
        if keys - {app.label for app in others.values()}:
            others = {i: AppConfig.create(entries[i]) for i in rest}
        others = {i: app for i, app in others.items() if app.label in keys}
    found = []
    for _, app in sorted({**own, **others}.items()):
        # MigrationLoader.migrations_module without importing the loader (and every model with it)
        explicit = app.label in modules
        module = modules[app.label] if explicit else app.name + ".migrations"
        found.append(describe(app, module, explicit, root))
    return found


def setup_apps(root):
    django.setup()
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    found = []
    for app in apps.get_app_configs():
        module, explicit = MigrationLoader.migrations_module(app.label)
        found.append(describe(app, module, explicit, root))
    return found


def collect(root):
    """What dbsnap needs from the configured settings, for the project rooted at ``root``."""
    root = os.path.realpath(root)
    out = {
        "django_version": django.get_version(),
        "debug": bool(settings.DEBUG),
        "settings_module": settings.SETTINGS_MODULE,
        "databases": {},
        "dbsnap": plain(getattr(settings, "DBSNAP", None)),
    }
    for alias, cfg in settings.DATABASES.items():
        keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        out["databases"][alias] = {k: plain(cfg.get(k)) for k in keys}
        out["databases"][alias]["OPTIONS"] = {k: plain(v) for k, v in (cfg.get("OPTIONS") or {}).items()}
    from django.apps import apps

    if apps.ready:  # in-process (manage.py dbsnap): Django's own registry is there already
        out["apps"] = setup_apps(root)
        return out
    try:
        out["apps"] = fast_apps(root)
    except Exception:
        out["apps"] = setup_apps(root)
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    print("@MARK@" + json.dumps(collect(os.getcwd())))
