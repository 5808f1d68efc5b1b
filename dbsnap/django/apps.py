"""The app's configuration: no models, no migrations; only the ``dbsnap`` management command."""

from django.apps import AppConfig


class DbsnapConfig(AppConfig):
    name = "dbsnap.django"
    label = "dbsnap"
    verbose_name = "dbsnap"
