"""Scripts that run in the project's own interpreter: the only code of dbsnap that imports Django.

dbsnap never imports them. :func:`script` reads one as text, to be run with ``python -c`` (discovery) or
``manage.py shell -c`` (the checks), so they also run where the project does (another interpreter, a container)
and every run gets fresh imports. Each prints one line: :data:`MARK`, then its result.
"""

from __future__ import annotations

from pathlib import Path

MARK = "DBSNAP-DISCOVERY:"


def script(name: str, **values: str) -> str:
    """The text of ``child/<name>.py`` with ``@MARK@`` and each ``@KEY@`` of ``values`` filled in."""
    text = (Path(__file__).parent / f"{name}.py").read_text()
    for key, value in {"MARK": MARK, **values}.items():
        text = text.replace(f"@{key}@", value)
    return text
