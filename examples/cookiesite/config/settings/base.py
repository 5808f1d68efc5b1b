"""Base settings, shaped like cookiecutter-django's ``config/settings/base.py``.

django-environ reads ``<project>/.env`` (a variable already set in the environment wins) and the database comes
from ``DATABASE_URL``; the ``sites`` app's migrations live in the project (``MIGRATION_MODULES``), as
cookiecutter-django sets them up, the ``notes`` app's in ``notes/db_migrations``, and the user model is the
project's own (``users.User``).
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve(strict=True).parent.parent.parent
APPS_DIR = BASE_DIR / "cookiesite"
env = environ.Env()

READ_DOT_ENV_FILE = env.bool("DJANGO_READ_DOT_ENV_FILE", default=True)
if READ_DOT_ENV_FILE and (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DJANGO_DEBUG", False)
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
SITE_ID = 1
USE_I18N = True
USE_TZ = True

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ROOT_URLCONF = "config.urls"

DJANGO_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "django.contrib.messages",
    "django.contrib.admin",
]
LOCAL_APPS = [
    "cookiesite.users",
    "cookiesite.notes",
]
INSTALLED_APPS = DJANGO_APPS + LOCAL_APPS

MIGRATION_MODULES = {
    "sites": "cookiesite.contrib.sites.migrations",  # cookiecutter-django's: a contrib app's migrations, here
    "notes": "cookiesite.notes.db_migrations",  # one of the project's own apps, in a folder of another name
}

AUTH_USER_MODEL = "users.User"

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(APPS_DIR / "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "/static/"
