# A squash of migrations that were first published under the app label "legacy_squash" and later under this
# one; none of the replaced files ship any more (as in social-auth-app-django's social_django).
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    replaces = [
        ("legacy_squash", "0001_initial"),
        ("legacy_squash", "0002_token_unique"),
        ("squashapp", "0001_initial"),
        ("squashapp", "0002_nonce"),
        ("squashapp", "0003_token_note"),
    ]

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Token",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("provider", models.CharField(max_length=32)),
                ("uid", models.CharField(max_length=255)),
                ("note", models.TextField(blank=True, default="")),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=models.deletion.CASCADE, related_name="tokens", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={"unique_together": {("provider", "uid")}},
        ),
        migrations.CreateModel(
            name="Nonce",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("server_url", models.CharField(max_length=255)),
                ("salt", models.CharField(max_length=65)),
            ],
        ),
    ]
