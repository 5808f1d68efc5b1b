from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "cookiesite.users"
    verbose_name = "Users"
