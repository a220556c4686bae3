"""`eventlake bench --scale small` as a smoke test: the harness runs and reports every key
with its goal.

No timing is asserted here (speed is measured by the bench, never by timed tests); the
numbers belong in the README's Performance table.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from eventlake.bench import GOALS, BenchReport, Goal
from eventlake.cli import main

# The keys each case writes; a key dropped or renamed by mistake fails here.
KEYS = {
    "ingest_ratio", "ingest_ratio_buckets", "ingest_jsonl_ratio", "scale_ingest_growth",
    "small_batch_vs_eventsourcing", "append_age_growth", "append_age_growth_partition_id",
    "refresh_age_growth", "refresh_age_growth_partition_id", "refresh_speedup_aggregate",
    "refresh_speedup_document", "refresh_speedup_aggregate_buckets",
    "refresh_speedup_document_buckets", "refresh_batch_read_ratio",
    "refresh_batch_read_ratio_aggregate", "refresh_batch_read_ratio_partition_id",
    "refresh_growth", "fold_overhead", "fold_overhead_reducer", "fold_overhead_reducer_typed",
    "sql_view_scan_ratio", "state_read_ratio",
    "state_read_ratio_current", "cold_open_s", "rebuild_rss_growth",
    "sql_view_refresh_speedup_merge", "sql_view_refresh_speedup_recompute",
    "sql_view_refresh_speedup_merge_buckets", "sql_view_refresh_speedup_recompute_buckets",
    "rebuild_speedup_2_workers", "bucket_task_overhead_ms", "ingest_parallel_speedup_2_workers",
}
HAS_EVENTSOURCING = importlib.util.find_spec("eventsourcing") is not None


@pytest.mark.integration
def test_bench_small_reports_every_key_with_its_goal(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--scale", "small", "--json-file", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scale"] == "small"
    assert set(report["goals"]) == KEYS == set(GOALS)
    for name, row in report["goals"].items():
        goal = GOALS[name]
        assert row["comparison"] == goal.comparison and row["target"] == goal.target, name
        if name == "small_batch_vs_eventsourcing" and not HAS_EVENTSOURCING:
            assert row["status"] == "skipped" and "eventsourcing" in row["note"], row
            continue
        assert row["value"] is not None and math.isfinite(row["value"]), name
        assert row["value"] > 0, name
        expected = "report" if goal.comparison is None else (
            "met" if (row["value"] <= goal.target if goal.comparison == "<=" else
                      row["value"] >= goal.target) else "missed")
        assert row["status"] == expected, (name, row)
    # The ratios and figures keep their old places in the JSON too.
    # Keys that are no ratio (seconds, milliseconds) are figures.
    figures = {"cold_open_s", "bucket_task_overhead_ms"}
    assert set(report["ratios"]) | figures == KEYS - (
        set() if HAS_EVENTSOURCING else {"small_batch_vs_eventsourcing"})
    assert figures <= set(report["figures"])
    for name, case in report["cases"].items():
        assert case["runs"] >= 2, name
        assert 0 < case["min_s"] <= case["median_s"] <= case["max_s"], name
    assert any("200 vs 20" in note for note in report["notes"])
    printed = capsys.readouterr().out
    for name in KEYS:
        assert name in printed, name
    assert "≤ 2" in printed and "≥ 0.7" in printed


def test_goal_verdicts():
    at_most = Goal("<=", 2.0, "lower is better")
    assert [at_most.status(v) for v in (1.0, 2.0, 2.01)] == ["met", "met", "missed"]
    at_least = Goal(">=", 50, "higher is better")
    assert [at_least.status(v) for v in (49.9, 50, 80)] == ["missed", "met", "met"]
    assert Goal(None, None, "reported").status(3.0) == "report"
    assert at_most.status(None) == at_most.status(float("nan")) == "skipped"


def test_report_lists_skipped_and_off_scale_goals():
    report = BenchReport(scale="medium")
    report.ratios["scale_ingest_growth"] = 1.5  # its goal is set for --scale large
    report.skipped["small_batch_vs_eventsourcing"] = "skipped: eventsourcing not installed"
    goals = report.goals()
    assert set(goals) == set(GOALS)
    assert goals["scale_ingest_growth"]["status"] == "met"
    assert goals["scale_ingest_growth"]["note"] == "goal set for --scale large"
    skipped = goals["small_batch_vs_eventsourcing"]
    assert skipped["status"] == "skipped" and skipped["value"] is None
    assert "not installed" in skipped["note"]
    assert goals["ingest_ratio"]["status"] == "skipped"
    assert goals["ingest_ratio"]["note"] == "not measured"


def test_small_batch_case_reports_skipped_without_eventsourcing(tmp_path, monkeypatch):
    import sys

    from eventlake import _bench_scaling
    from eventlake.bench import SCALES

    # A None entry in sys.modules makes `import eventsourcing.sqlite` raise ImportError.
    monkeypatch.setitem(sys.modules, "eventsourcing.sqlite", None)
    report = BenchReport(scale="small")
    _bench_scaling.bench_small_batches(SCALES["small"], tmp_path, report)
    assert "small_batch_vs_eventsourcing" not in report.ratios
    assert report.cases == []
    row = report.goals()["small_batch_vs_eventsourcing"]
    assert row["status"] == "skipped"
    assert "eventsourcing not installed" in row["note"] and "[bench]" in row["note"]


def test_only_runs_the_named_steps(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--scale", "small", "--only", "fold", "--json-file", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {name for name, row in report["goals"].items() if row["value"] is not None} == {
        "fold_overhead"}
    assert "only the steps fold ran" in report["notes"]
    assert main(["bench", "--only", "nonsense"]) == 1
    err = capsys.readouterr().err
    assert "a bench step must be one of ingest, " in err and "got 'nonsense'" in err
