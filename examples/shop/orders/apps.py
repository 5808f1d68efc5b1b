"""App configuration for orders."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Orders app (orders and order items)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "orders"
