"""The README's Python examples run as written (in a temp folder, so data/lake is untouched)."""

from __future__ import annotations

import re

from conftest import REPO


def _python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    # Examples that need an object store are exercised by tests/test_s3.py instead.
    return [b for b in blocks if "s3://" not in b]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    lake = namespace["lake"]
    assert lake.state("acct-1", view="balances") == {"balance": 200}
    assert lake.state("acct-1") == {"owner": {"name": "Ada"}}
    repo = namespace["repo"]
    assert repo.get_state()["todos"]["t1"] == {"done": False}
