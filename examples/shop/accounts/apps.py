"""App configuration for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Accounts app (custom user model)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
