"""settings.DEBUG as manage.py sees it, run with ``manage.py shell -c``. Prints MARK and True or False."""

from django.conf import settings

print("@MARK@", bool(settings.DEBUG))
