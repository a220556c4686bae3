"""`eventlake quarantine list|replay` and the refusal of a changed file (acceptance 7 of #18:
fix a quarantined line, replay, the record lands once; replay again: no-op)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, main


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def good(partition: str, amount: int) -> str:
    return json.dumps({"type": "deposit", "payload": {"amount": amount}, "partition": partition})


def test_fix_replay_and_replay_again(tmp_path, capsys):
    root = str(tmp_path / "lake")
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join([good("a", 1), "{oops", good("c", 3)]) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "ingest", str(path), "--quarantine", "--lake", root)
    assert code == EXIT_OK and "1 bad record(s) quarantined" in out
    code, out, _ = run(capsys, "quarantine", "list", "--lake", root)
    assert code == EXIT_OK and "orders.jsonl.jsonl" in out and "pending" in out
    # Dropping a corrected file in again is refused: its good records landed already.
    path.write_text(path.read_text().replace("{oops", good("b", 2)), encoding="utf-8")
    code, _, err = run(capsys, "ingest", str(path), "--quarantine", "--lake", root)
    assert code == EXIT_ERROR
    assert "quarantine replay" in err and "--as-new" in err
    # Fix the entry instead, and replay it.
    target = Path(root) / "quarantine" / "orders.jsonl.jsonl"
    entry = json.loads(target.read_text())
    entry["raw"] = good("b", 2)
    target.write_text(json.dumps(entry) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "quarantine", "replay", "orders.jsonl.jsonl", "--lake", root)
    assert code == EXIT_OK and "replayed 1 record" in out
    code, out, _ = run(capsys, "quarantine", "replay", str(target), "--lake", root)
    assert code == EXIT_OK and "nothing to replay" in out and "replayed before" in out
    lake = el.Lake.open(root, create=False)
    assert [json.loads(p)["amount"] for p in lake.events().collect()["payload"]] == [1, 3, 2]
    code, out, _ = run(capsys, "quarantine", "list", "--lake", root, "--json")
    assert [e["status"] for e in json.loads(out)["entries"]] == ["replayed"]


def test_as_new_lands_a_changed_file(tmp_path, capsys):
    root = str(tmp_path / "lake")
    path = tmp_path / "orders.jsonl"
    path.write_text(good("a", 1) + "\n", encoding="utf-8")
    assert run(capsys, "ingest", str(path), "--lake", root)[0] == EXIT_OK
    path.write_text(good("a", 1) + "\n" + good("a", 2) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "ingest", str(path), "--as-new", "--lake", root)
    assert code == EXIT_OK and "2 events" in out


def test_replay_of_a_missing_file_names_where_it_looked(tmp_path, capsys):
    root = str(tmp_path / "lake")
    el.Lake.open(root)
    code, _, err = run(capsys, "quarantine", "replay", "nope.jsonl", "--lake", root)
    assert code == EXIT_ERROR and "quarantine list" in err
