"""Models for the accounts app."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """Custom user with an optional phone number."""

    phone = models.CharField(max_length=32, blank=True, default="")

    def __str__(self) -> str:
        return self.username
