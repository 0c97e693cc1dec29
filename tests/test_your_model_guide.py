"""docs/your-model.md runs as written: its Python blocks in order in one namespace, each ```text block right after a
Python block matched against what that block printed (`...` matches anything, decimals any decimal), its shell
blocks as real commands, and a block preceded by `<!-- file: NAME -->` written to NAME (a module they import)."""

import contextlib
import doctest
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "your-model.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks():
    return [(m["lang"], m["body"], m["file"]) for m in BLOCK.finditer(GUIDE.read_text())]


def matches(expected: str, got: str) -> bool:
    """Equal up to `...` and whitespace; decimals compare as placeholders (the last digits of an accuracy may differ
    with the machine's floating point), every word, row and integer as written."""
    def masked(text):
        return re.sub(r"\d+\.\d+", "#", text)

    return doctest.OutputChecker().check_output(masked(expected), masked(got),
                                                doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)


def test_the_guide_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    namespace: dict = {"__name__": "guide"}
    printed = None
    ran = {"python": 0, "console": 0}
    for lang, body, file in blocks():
        if file:
            (tmp_path / file).write_text(body)
        elif lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"{GUIDE.name} block {ran['python']}", "exec"), namespace)
            printed, ran["python"] = out.getvalue(), ran["python"] + 1
            continue
        elif lang == "text" and printed is not None:
            assert matches(body, printed), f"the guide says\n{body}\nthe code printed\n{printed}"
        elif lang == "console":
            for line in body.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "ticketlab", line
                done = subprocess.run([sys.executable, "-m", "ticketlab.cli", *argv[1:]], capture_output=True,
                                      text=True, env=env, timeout=600)
                assert done.returncode == 0, f"{line}\n{done.stderr}"
                ran["console"] += 1
        printed = None
    assert ran["python"] >= 6 and ran["console"] >= 2, ran
