"""The README's examples are real output: every block marked ``<!-- readme-check -->`` is run, in document order,
as one session on a fresh copy of the seeded SQLite example project, and each command's output is compared with
what the README shows.

In a checked block, ``$ CMD`` is a command (run by bash in the project folder, no terminal); the lines under it up
to the next command are its expected output (stdout and stderr, in the order a terminal shows them); a
line ``...`` stands for any number of lines; ``# exit code N`` after two spaces at the end of an expected line gives
the expected exit code (otherwise 0); other ``  # comment`` tails are ignored. What changes from run to run (the
project path, times, sizes, hashes, versions, pids, column padding) is normalized on both sides.

``python tests/test_readme.py`` runs the session and prints each command's real output, to update the README.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from conftest import seeded, sqlite_project

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MARK = "<!-- readme-check -->"
README_ROOTS = (re.compile(r"/tmp/readme\.\w+/shop"), re.compile(r"/home/me/shop"))

NORMALIZE = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\b\d{8}-\d{6}\b"), "<stamp>"),
    (re.compile(r"\b\d+(\.\d+)? (B|KB|MB|GB|TB)\b"), "<size>"),
    (re.compile(r"\b\d+\.\d+ s\b"), "<secs>"),
    (re.compile(r"\b\d+ bytes\b"), "<n> bytes"),
    (re.compile(r"the manifest says \d+"), "the manifest says <n>"),
    (re.compile(r"ratio \d+\.\dx"), "ratio <r>"),
    (re.compile(r'"ratio": ?\d+(\.\d+)?'), '"ratio":<r>'),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hex>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\b\d+\.\d+\.\d+\b"), "<version>"),
    (re.compile(r"\bon [\w.-]+ \("), "on <host> ("),
    (re.compile(r"\s+"), " "),
]
EXIT = re.compile(r"\s{2,}# exit code (\d+)\s*$")
COMMENT = re.compile(r"\s{2,}#.*$")


@dataclass
class Command:
    line: int  # 1-based line of the README
    cmd: str
    expected: list[str] = field(default_factory=list)
    exit_code: int = 0


def parse(text: str) -> list[Command]:
    """The commands of every checked block, in document order."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            i += 1
            assert lines[i].startswith("```"), f"README line {i + 1}: {MARK} must be followed by a fenced block"
            i += 1
            while not lines[i].startswith("```"):
                raw = lines[i]
                if raw.startswith("$ "):
                    commands.append(Command(i + 1, COMMENT.sub("", raw[2:]).strip()))
                elif raw.strip():
                    assert commands, f"README line {i + 1}: output before any command"
                    m = EXIT.search(raw)
                    if m:
                        commands[-1].exit_code = int(m.group(1))
                    commands[-1].expected.append(COMMENT.sub("", raw))
                i += 1
        i += 1
    return commands


def normalize(line: str, root: str | None = None) -> str:
    if root:
        line = line.replace(root, "<root>")
    for pattern in README_ROOTS:
        line = pattern.sub("<root>", line)
    for pattern, repl in NORMALIZE:
        line = pattern.sub(repl, line)
    return line.strip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (with ``...`` for any run of lines) matches ``actual`` line for line."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def session(root: Path) -> list[tuple[Command, subprocess.CompletedProcess]]:
    """Run every checked command in ``root`` (a seeded copy of the example project), in order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DBSNAP_", "DJANGO_", "PG"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `dbsnap` is this one
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    results = []
    for c in parse(README.read_text()):
        # One stream, unbuffered: stderr and stdout lines in the order a terminal shows them.
        proc = subprocess.run(
            ["bash", "-c", c.cmd],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        results.append((c, proc))
    return results


def seeded_example(dest: Path) -> Path:
    """A copy of the example project, migrated and seeded on SQLite as the README's reader has it."""
    return seeded(sqlite_project(dest)).root


def test_readme_examples_are_real_output(tmp_path: Path) -> None:
    assert shutil.which("jq"), "jq is not installed (apt-get install jq): the README's examples pipe --json into it"
    root = seeded_example(Path(tempfile.mkdtemp(prefix="readme.", dir=tmp_path)) / "shop")
    results = session(root)
    assert len(results) >= 30, "the README lost its checked examples"
    failures = []
    for c, proc in results:
        actual = [normalize(x, str(root)) for x in proc.stdout.splitlines() if x.strip()]
        expected = [normalize(x) for x in c.expected]
        if proc.returncode != c.exit_code or not matches(expected, actual):
            failures.append(
                f"README line {c.line}: $ {c.cmd}\n  exit {proc.returncode} (README: {c.exit_code})\n"
                + "  README:\n"
                + "".join(f"    {x}\n" for x in expected)
                + "  real:\n"
                + "".join(f"    {x}\n" for x in actual)
            )
    assert not failures, "\n".join(failures)


def rewrite(text: str, results: list[tuple[Command, subprocess.CompletedProcess]]) -> str:
    """``text`` with each checked command's expected output replaced by its real output (``--write``)."""
    lines = text.splitlines()
    by_line = {c.line: proc for c, proc in results}
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() != MARK:
            i += 1
            continue
        out.append(lines[i + 1])  # the opening fence
        i += 2
        block: list[str] = []
        while not lines[i].startswith("```"):
            if lines[i].startswith("$ "):
                proc = by_line[i + 1]
                shown = proc.stdout.rstrip("\n").splitlines()
                if proc.returncode and shown:
                    shown[-1] += f"  # exit code {proc.returncode}"
                if block and block[-1] != "" and out_of(block):
                    block.append("")
                block += [lines[i], *shown]
            i += 1
        out += block
    return "\n".join(out) + "\n"


def out_of(block: list[str]) -> bool:
    """True when the last command in ``block`` printed something (a blank line then separates the next one)."""
    return not block[-1].startswith("$ ")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="readme.", dir="/tmp") as tmp:
        results = session(seeded_example(Path(tmp) / "shop"))
    if sys.argv[1:] == ["--write"]:
        README.write_text(rewrite(README.read_text(), results))
    for c, proc in results:
        print(f"\n# README line {c.line} (exit {proc.returncode})\n$ {c.cmd}")
        print(proc.stdout.rstrip())
