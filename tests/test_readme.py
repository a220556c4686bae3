"""The README's Python examples run as written (in a temp folder, so data/lake is untouched)."""

from __future__ import annotations

import re

from tests.samples import REPO


def _python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    # Examples that need an object store are exercised by tests/store/test_s3.py instead.
    return [b for b in blocks if "s3://" not in b]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    lake = namespace["lake"]
    assert lake.state("acct-1", view="wallets") == {"balance": 200}
    assert lake.state("acct-1") == {"owner": {"name": "Ada"}}
    assert [(r["type"], r["total"]) for r in lake.state("acct-1", view="cashflow")] == [
        ("deposit", 250), ("withdrawal", 50)]
    repo = namespace["repo"]
    assert repo.get_state()["todos"]["t1"] == {"done": False}


def test_readme_example_does_not_collide_with_the_sample_views(tmp_path, monkeypatch):
    """The example's views share no name with data/samples/views.py and live in a lake of
    their own, so following it after the quickstart refuses nothing."""
    from eventlake.config import load_views

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)
    lake = namespace["lake"]
    samples = load_views(str(REPO / "data" / "samples" / "views.py"))
    assert {v.name for v in samples} & set(lake.views) == set()
    assert "open(\"data/lake\"" not in _python_blocks()[0]
    # The quickstart lake with the samples' views, and the example's views, together.
    import eventlake as el

    both = el.Lake.open(tmp_path / "quickstart", views=[*samples, *namespace["views"]])
    both.append([{"type": "deposit", "payload": {"amount": 1, "currency": "EUR"},
                  "partition": "acct-1"}])
    both.materialize()
    assert both.failed_partitions("totals") == both.failed_partitions("wallets") == []
