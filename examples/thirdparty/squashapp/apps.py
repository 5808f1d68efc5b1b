from django.apps import AppConfig


class SquashAppConfig(AppConfig):
    name = "squashapp"
    default_auto_field = "django.db.models.BigAutoField"
