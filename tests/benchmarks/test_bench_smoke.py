"""`eventlake bench --scale small` as a smoke test: the harness runs and reports every ratio.

No timing is asserted here; the numbers belong in the README's Performance table.
"""

from __future__ import annotations

import json

import pytest

from eventlake.cli import main

RATIOS = {"ingest_ratio", "ingest_jsonl_ratio", "refresh_speedup_aggregate",
          "refresh_speedup_document", "refresh_growth", "fold_overhead", "state_read_ratio",
          "rebuild_rss_growth"}


@pytest.mark.integration
def test_bench_small_reports_every_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--scale", "small", "--json-file", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scale"] == "small"
    assert set(report["ratios"]) == RATIOS
    for name, value in report["ratios"].items():
        assert value > 0, name
    for name, case in report["cases"].items():
        assert case["runs"] >= 2, name
        assert 0 < case["min_s"] <= case["median_s"] <= case["max_s"], name
    printed = capsys.readouterr().out
    assert "ingest_ratio" in printed and "refresh_growth" in printed
