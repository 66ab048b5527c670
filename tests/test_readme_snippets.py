"""Every ```python block of README.md runs as written, each in a fresh interpreter.

A block that would train for long says so on the line itself, with a trailing
comment `# readme-test: OLD -> NEW`: the test runs that line with OLD replaced
by NEW (e.g. `epochs=100 -> epochs=2`); everything else runs verbatim. The
`rln demo` options the README names must exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = re.compile(r"#\s*readme-test:\s*(.+?)\s*->\s*(.+?)\s*$")

# Blocks that are fragments on purpose (none today). strict=True: once a block runs,
# its mark must go.
FRAGMENTS: dict = {}


def python_blocks() -> list[tuple[str, int, str]]:
    """(section title, line number, code) of every ```python block, in README order."""
    blocks, section, code, start = [], "", None, 0
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("## "):
            section = line[3:].strip()
        if code is None and line.strip() == "```python":
            code, start = [], number
        elif code is not None and line.strip() == "```":
            blocks.append((section, start, "\n".join(code)))
            code = None
        elif code is not None:
            code.append(line)
    return blocks


def runnable(code: str) -> str:
    """The block with every `# readme-test: OLD -> NEW` line rewritten."""
    lines = []
    for line in code.splitlines():
        mark = MARK.search(line)
        if mark:
            old, new = mark.groups()
            assert old in line[:mark.start()], f"readme-test mark: {old!r} not on its line"
            line = line[:mark.start()].replace(old, new).rstrip()
        lines.append(line)
    return "\n".join(lines)


def _params():
    params = []
    for section, line, code in python_blocks():
        marks = [pytest.mark.xfail(strict=True, reason=FRAGMENTS[section])] \
            if section in FRAGMENTS else []
        params.append(pytest.param(code, id=f"README.md:{line} {section}", marks=marks))
    return params


def test_the_readme_has_python_blocks():
    sections = {section for section, _, _ in python_blocks()}
    assert "scikit-learn (`rln_sklearn`) and `rln demo`" in sections


@pytest.mark.parametrize("code", _params())
def test_python_block_runs(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "adapters"), os.environ.get("PYTHONPATH", "")]),
        KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    done = subprocess.run([sys.executable, "-c", runnable(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"


def test_the_readme_names_only_real_demo_options(capsys):
    from rln_sklearn.cli import main

    help_text = ""
    for argv in (["--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        help_text += capsys.readouterr().out
    text = README.read_text()
    section = text[text.index("### `rln demo`"):text.index("## Benchmarks")]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", section))
    assert named, "the demo section names no option"
    missing = sorted(option for option in named if option not in help_text)
    assert not missing, f"README names rln demo options that do not exist: {missing}"
    # And the other way: every option of `rln demo --help` is in the README's list.
    offered = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text)) - {"--help"}
    unlisted = sorted(offered - named)
    assert not unlisted, f"rln demo options the README does not list: {unlisted}"
