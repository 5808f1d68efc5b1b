"""Models for the accounts app (shop_extras: PostgreSQL types, a collation and a trigram index)."""

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import HStoreField
from django.contrib.postgres.indexes import GinIndex
from django.db import models


class User(AbstractUser):
    """Custom user with an optional phone number, free-form preferences and a naturally sorted nickname."""

    phone = models.CharField(max_length=32, blank=True, default="")
    prefs = HStoreField(default=dict, blank=True)
    nickname = models.CharField(max_length=64, blank=True, default="", db_collation="natural_sort")

    class Meta:
        indexes = [GinIndex(fields=["username"], name="accounts_user_username_trgm", opclasses=["gin_trgm_ops"])]

    def __str__(self) -> str:
        return self.username
