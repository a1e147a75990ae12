"""The README's Python example runs as written."""

import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def python_section_code():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Python\n", 1)
    assert len(section) == 2, "README.md has no '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section[1], re.S)
    assert blocks, "the README's Python section has no python code block"
    return blocks[0]


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it writes example.index
    exec(compile(python_section_code(), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("(64, 32) ")
    assert out[1].startswith("20000 ")
    assert (tmp_path / "example.index").exists()
