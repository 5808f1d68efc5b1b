"""The verbs' machinery: one module per pipeline (save, rollback, reset, prune, verify, compare, doctor).

Each runs inside a :class:`~dbsnap.context.Context` and may touch the store (:mod:`dbsnap.store`), the databases
(through :mod:`dbsnap.engines`) and the project's files (through :mod:`dbsnap.project`); none prints or exits:
:mod:`dbsnap.api` calls them and :mod:`dbsnap.cli` renders what they return.
"""
