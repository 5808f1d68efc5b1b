"""The Django side: discovery (the project root, its environment, DATABASES and the project's own migration
folders), manage.py steps in a child process, and migration files read without importing them.

Django itself is never imported in dbsnap's process: the scripts in ``child/`` run in the project's own
interpreter (``python -c`` or ``manage.py shell -c``), the only code of dbsnap that imports Django.
"""
