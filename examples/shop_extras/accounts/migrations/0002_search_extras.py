import django.contrib.postgres.fields.hstore
import django.contrib.postgres.indexes
from django.contrib.postgres.operations import CreateCollation, HStoreExtension, TrigramExtension
from django.db import migrations, models

SEARCH_SQL = """
CREATE TEXT SEARCH DICTIONARY shop_simple (TEMPLATE = simple, STOPWORDS = english);
CREATE TEXT SEARCH CONFIGURATION shop_search (COPY = english);
ALTER TEXT SEARCH CONFIGURATION shop_search ALTER MAPPING FOR asciiword WITH shop_simple, english_stem;
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        HStoreExtension(),
        TrigramExtension(),
        CreateCollation("natural_sort", provider="icu", locale="und-u-kn-true"),
        migrations.RunSQL(
            SEARCH_SQL,
            reverse_sql="DROP TEXT SEARCH CONFIGURATION shop_search; DROP TEXT SEARCH DICTIONARY shop_simple;",
        ),
        migrations.AddField(
            model_name="user",
            name="prefs",
            field=django.contrib.postgres.fields.hstore.HStoreField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="user",
            name="nickname",
            field=models.CharField(blank=True, db_collation="natural_sort", default="", max_length=64),
        ),
        migrations.AddIndex(
            model_name="user",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["username"], name="accounts_user_username_trgm", opclasses=["gin_trgm_ops"]
            ),
        ),
    ]
