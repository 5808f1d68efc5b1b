"""Local development settings (cookiecutter-django's ``config/settings/local.py``)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", True)
SECRET_KEY = env(
    "DJANGO_SECRET_KEY",
    default="django-insecure-dbsnap-example-cookiesite-not-for-production-use-0123456789",
)
ALLOWED_HOSTS = ["localhost", "0.0.0.0", "127.0.0.1"]

# dbsnap as a Django app: `python manage.py dbsnap ...` (a development tool, so in the local settings only)
INSTALLED_APPS += ["dbsnap.django"]  # noqa: F405
