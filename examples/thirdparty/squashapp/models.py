from django.conf import settings
from django.db import models


class Token(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokens")
    provider = models.CharField(max_length=32)
    uid = models.CharField(max_length=255)
    note = models.TextField(blank=True, default="")

    class Meta:
        unique_together = [("provider", "uid")]


class Nonce(models.Model):
    server_url = models.CharField(max_length=255)
    salt = models.CharField(max_length=65)
