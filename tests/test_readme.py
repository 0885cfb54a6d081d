"""The README's Python examples run as written, so the README cannot drift from the code."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert python_blocks()


def test_readme_python_blocks_run(capsys):
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), {})
    assert capsys.readouterr().out.strip().splitlines()[-1] == "True"
