"""dbsnap as a Django app: add ``"dbsnap.django"`` to ``INSTALLED_APPS`` and run ``python manage.py dbsnap ...``.

The adapter at the top, beside the ``dbsnap`` script: the same click CLI (every command, option, exit code and
``--json``), run in-process with the settings manage.py already loaded; discovery reads them in this process with
the code its child process runs elsewhere. Importing this package configures nothing.
"""
