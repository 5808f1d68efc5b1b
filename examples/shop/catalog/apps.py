"""App configuration for catalog."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Catalog app (categories and products)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "catalog"
