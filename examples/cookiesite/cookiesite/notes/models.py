from django.conf import settings
from django.contrib.sites.models import Site
from django.db import models


class Note(models.Model):
    """Foreign keys across apps: to the custom user model and to the sites app whose migrations live here."""

    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notes")
    site = models.ForeignKey(Site, on_delete=models.PROTECT)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
