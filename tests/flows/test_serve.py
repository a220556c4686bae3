"""`eventlake serve` against a real Prefect server (the session's `prefect_server`): one
pipeline run at a time per lake, whatever the interval, and one SIGINT stops it with 130."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

import eventlake as el
from tests.samples import SAMPLE_FILES

# Every pipeline run loads this module, in a process of its own: each run takes at least
# SLOW seconds, longer than the 2 s interval, so the runs would overlap without the limit.
SLOW_VIEWS = '''
import time

from eventlake.views import ReducerView

time.sleep({slow})

COUNTS = ReducerView(name="counts", version=1, initial_state=lambda: {{"n": 0}},
                     reduce=lambda state, event: {{"n": state["n"] + 1}})
'''

# Serving, the server and the commands' exit codes do not depend on the event log's layout.
pytestmark = pytest.mark.one_layout


def test_deployments_run_one_at_a_time_per_lake(tmp_path):
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from eventlake.flows.serve import deployments, lake_key

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pipeline, upkeep = deployments(inbox=str(inbox), lake=str(tmp_path / "a" / "lake"))
    other, _ = deployments(inbox=str(inbox), lake=str(tmp_path / "b" / "lake"))
    key = lake_key(str(tmp_path / "a" / "lake"))
    assert key.startswith("lake-") and len(key) == len("lake-") + 8
    assert (pipeline.name, upkeep.name) == (f"pipeline-{key}", f"maintenance-{key}")
    assert other.name != pipeline.name  # two lakes on one server do not share a deployment
    assert pipeline.concurrency_limit == 1 and upkeep.concurrency_limit == 1
    assert (pipeline.concurrency_options.collision_strategy
            == ConcurrencyLimitStrategy.CANCEL_NEW)
    assert upkeep.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE


@pytest.mark.integration
def test_serve_never_overlaps_pipeline_runs_and_stops_on_one_sigint(prefect_server, tmp_path):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from eventlake.flows.serve import lake_key

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLE_FILES[0], inbox / SAMPLE_FILES[0].name)
    views = tmp_path / "slow_views.py"
    views.write_text(SLOW_VIEWS.format(slow=3), encoding="utf-8")
    lake = tmp_path / "lake"
    name = f"pipeline-{lake_key(str(lake))}"
    log = (tmp_path / "serve.log").open("w")
    serving = subprocess.Popen(
        [sys.executable, "-m", "eventlake.cli", "serve", "--interval", "2", "--lake", str(lake),
         "--inbox", str(inbox), "--views", str(views)],
        stdout=log, stderr=subprocess.STDOUT, env=prefect_server.env(), cwd=tmp_path)
    by_name = DeploymentFilter(name=DeploymentFilterName(any_=[name]))
    try:
        deadline = time.monotonic() + 240
        while True:
            with prefect_server.client() as client:
                runs = client.read_flow_runs(deployment_filter=by_name)
            finished = [r for r in runs if r.state and r.state.is_completed()]
            dropped = [r for r in runs if r.state and r.state.is_cancelled()]
            if len(finished) >= 2 and dropped:
                break
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, [(r.name, r.state_name) for r in runs]
            time.sleep(1)
        stopped_at = time.monotonic()
        serving.send_signal(signal.SIGINT)
        code = serving.wait(timeout=30)
        took = time.monotonic() - stopped_at
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 130, output
    assert took < 20, took
    assert "Traceback" not in output, output
    assert "stopping: cancelling runs in flight" in output

    with prefect_server.client() as client:
        runs = client.read_flow_runs(deployment_filter=by_name)
    # The runs that were dropped because one was running say so.
    assert any(r.state.message == "Deployment concurrency limit reached." for r in runs
               if r.state and r.state.is_cancelled())
    # Runs the server dropped never ran (run_count 0; their start equals their end, the
    # moment they were dropped); the rest ran one after the other.
    ran = sorted((r.start_time, r.end_time or datetime.now(UTC), r.name)
                 for r in runs if r.run_count > 0 and r.start_time is not None)
    assert len(ran) >= 2
    for (_, end, first), (start, _, second) in itertools.pairwise(ran):
        assert end <= start, f"{first} (until {end}) overlaps {second} (from {start})"
    assert el.Lake.open(lake, create=False).last_seq() == 578
