"""Replaying quarantined records (eventlake/ingest/replay.py): a corrected record lands once,
keyed by its file and line; a changed file under a landed name is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eventlake.errors import ChangedFileError
from eventlake.ingest.inbox import ingest_file
from eventlake.ingest.replay import (
    entry_status,
    quarantine_entries,
    replay_quarantine,
)
from eventlake.store.log import EventLog
from tests.racing import at_once


def good(partition: str, amount: int) -> str:
    return json.dumps({"type": "deposit", "payload": {"amount": amount}, "partition": partition})


def write_mixed(folder: Path) -> Path:
    path = folder / "orders.jsonl"
    lines = [good("a", 1), "{oops", good("b", 2), '{"type": "", "payload": {}, "partition": "c"}',
             good("d", 4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fix(quarantine: Path, line: int, raw: str) -> None:
    entries = [json.loads(text) for text in quarantine.read_text().splitlines()]
    for entry in entries:
        if entry["line"] == line:
            entry["raw"] = raw
    quarantine.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def amounts(lake) -> list[int]:
    return [json.loads(p)["amount"] for p in lake.events().collect()["payload"].to_list()]


def test_a_fixed_record_lands_once_and_a_second_replay_is_a_no_op(lake, tmp_path):
    path = write_mixed(tmp_path)
    first = ingest_file(lake, path, chunk_events=2)
    assert (first.events, first.quarantined) == (3, 2)
    target = Path(first.quarantine_file)
    assert [e.line for e in quarantine_entries(target)] == [2, 4]
    assert [entry_status(lake, e) for e in quarantine_entries(target)] == ["pending"] * 2
    fix(target, 2, good("b2", 20))
    result = replay_quarantine(lake, target)
    assert (result.replayed, result.already) == (1, 0)
    assert [p.line for p in result.still_bad] == [4] and "type" in result.still_bad[0].reason
    assert amounts(lake) == [1, 2, 4, 20]
    assert [entry_status(lake, e) for e in quarantine_entries(target)] == ["replayed",
                                                                          "pending"]
    again = replay_quarantine(lake, target)
    assert (again.replayed, again.already, len(again.still_bad)) == (0, 1, 1)
    # The other one fixed later lands too, and only it.
    fix(target, 4, good("c", 30))
    later = replay_quarantine(lake, target)
    assert (later.replayed, later.already, later.still_bad) == (1, 1, ())
    assert amounts(lake) == [1, 2, 4, 20, 30]
    assert replay_quarantine(lake, target).replayed == 0 and lake.last_seq() == 5


def test_a_replay_that_crashed_after_its_commit_is_not_landed_again(lake, tmp_path,
                                                                     monkeypatch):
    path = write_mixed(tmp_path)
    target = Path(ingest_file(lake, path).quarantine_file)
    fix(target, 2, good("b2", 20))
    original = EventLog.append

    def commit_then_fail(self, batch, **kwargs):
        original(self, batch, **kwargs)
        raise OSError("connection lost after the commit")

    monkeypatch.setattr(EventLog, "append", commit_then_fail)
    with pytest.raises(OSError):
        replay_quarantine(lake, target)
    monkeypatch.setattr(EventLog, "append", original)
    assert replay_quarantine(lake, target).already == 1
    assert amounts(lake) == [1, 2, 4, 20]


def test_a_corrected_file_under_the_same_name_is_refused_or_lands_as_new(lake, tmp_path):
    path = write_mixed(tmp_path)
    ingest_file(lake, path)
    path.write_text(path.read_text().replace("{oops", good("b2", 20)), encoding="utf-8")
    with pytest.raises(ChangedFileError, match="quarantine replay") as info:
        ingest_file(lake, path)
    assert "--as-new" in str(info.value) and lake.last_seq() == 3
    # Another producer's file of that name is another file.
    assert ingest_file(lake, path, producer="crm").events == 4
    assert ingest_file(lake, path, as_new=True).events == 4


def test_a_whole_file_entry_is_not_replayed(lake, tmp_path):
    path = tmp_path / "blob.jsonl"
    path.write_bytes(b"\xff\xfe")
    target = Path(ingest_file(lake, path).quarantine_file)
    result = replay_quarantine(lake, target)
    assert (result.replayed, result.whole_file) == (0, 1)
    assert [entry_status(lake, e) for e in quarantine_entries(target)] == ["whole-file"]


def test_a_csv_row_is_fixed_as_a_csv_row(lake, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('type,payload,partition\ndeposit,"{""amount"": 1}",a\n'
                    'deposit,"{""amount"": oops}",b\n', encoding="utf-8")
    target = Path(ingest_file(lake, path).quarantine_file)
    [entry] = quarantine_entries(target)
    assert entry.line == 3
    fix(target, 3, 'deposit,"{""amount"": 2}",b')
    assert replay_quarantine(lake, target).replayed == 1
    assert amounts(lake) == [1, 2]


def test_replays_racing_on_one_line_land_it_once(lake, tmp_path):
    # Four operators fix line 2 each their own way and replay at the same moment, over
    # several rounds: every line lands at most once, and the first commit wins.
    path = write_mixed(tmp_path)
    target = Path(ingest_file(lake, path).quarantine_file)
    copies = []
    for number in range(4):
        copy = tmp_path / f"copy{number}" / target.name
        copy.parent.mkdir()
        shutil.copy(target, copy)
        fix(copy, 2, good("b", 100 + number))
        fix(copy, 4, good("c", 200 + number))
        copies.append(copy)
    results = at_once(lambda copy: replay_quarantine(lake, copy), copies)
    assert not [r for r in results if isinstance(r, Exception)], results
    landed = sorted(amounts(lake))
    assert landed[:3] == [1, 2, 4] and len(landed) == 5, landed
    fixed = landed[3:]
    assert [n // 100 for n in fixed] == [1, 2]
    assert sum(r.replayed for r in results) == 2
