#!/usr/bin/env python
"""Django's command-line utility, as cookiecutter-django writes it: the settings module comes from the
environment (``DJANGO_SETTINGS_MODULE``), ``config.settings.local`` by default."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

    from django.core.management import execute_from_command_line

    # This allows easy placement of apps within the interior cookiesite directory.
    current_path = Path(__file__).parent.resolve()
    sys.path.append(str(current_path / "cookiesite"))

    execute_from_command_line(sys.argv)
