"""Every Python example of docs/integrations.md runs as written (each in a fresh namespace and directory)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
NEEDS = {"transformers": ("transformers", "accelerate"), "lightning": ("lightning",), "TensorBoard": ("tensorboard",)}

pytestmark = pytest.mark.filterwarnings("ignore")  # the frameworks' own deprecation notes are not the examples' own


def test_the_examples_are_found():
    assert len(BLOCKS) == 6


@pytest.mark.parametrize("code", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_example_runs(code, tmp_path, monkeypatch, capsys):
    for word, packages in NEEDS.items():
        if word in code:
            for package in packages:
                pytest.importorskip(package)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    if "cb.history" in code or "cycle.history" in code:  # one line per level: 0 dense, then pruned levels
        levels = [line.split()[0] for line in printed.splitlines() if re.match(r"\d+ density", line)]
        assert levels == [str(i) for i in range(len(levels))] and len(levels) >= 3, printed
