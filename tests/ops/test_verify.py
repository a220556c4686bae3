"""`verify` on a view that was never built: nothing is compared and it says so, but the event
log it would fold from is still read, so a damaged log is an error and never an "ok"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, main
from eventlake.errors import CorruptLakeError
from eventlake.ops.verify import verify_view


@pytest.fixture
def unbuilt(tmp_path: Path) -> el.Lake:
    lake = el.Lake.open(tmp_path / "lake")
    for batch in range(2):
        lake.append([{"type": "set", "partition": "p", "payload": {"target": "v",
                                                                   "value": batch}}],
                    producer="t", batch_no=batch)
    return lake


def test_a_view_never_built_is_reported_as_not_built(unbuilt, capsys):
    report = verify_view(unbuilt, unbuilt.view("document"))
    assert (report.built, report.ok, report.partitions_checked) == (False, True, 0)
    assert main(["verify", "--lake", unbuilt.root, "--view", "document"]) == EXIT_OK
    assert "document: not built, nothing to verify" in capsys.readouterr().out
    assert main(["verify", "--lake", unbuilt.root, "--view", "document", "--json"]) == EXIT_OK
    (view,) = json.loads(capsys.readouterr().out)["views"]
    assert view["built"] is False
    unbuilt.materialize()
    report = verify_view(unbuilt, unbuilt.view("document"))
    assert (report.built, report.ok, report.partitions_checked) == (True, True, 1)


def test_a_damaged_event_log_fails_verify_even_with_no_view_built(unbuilt, capsys):
    entry = Path(unbuilt.storage.local_path("events", "_delta_log", f"{2:020d}.json"))
    entry.write_text("garbage{\n")
    damaged = el.Lake.open(unbuilt.root, create=False)
    from eventlake.store import deltalog, storage

    storage._open_tables.__dict__.clear()
    deltalog.forget_logs()
    with pytest.raises(CorruptLakeError):
        verify_view(damaged, damaged.view("document"))
    assert main(["verify", "--lake", unbuilt.root]) == EXIT_ERROR
    assert str(entry) in capsys.readouterr().err
