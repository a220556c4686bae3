"""The pipeline flow against a real Prefect server (the session's `prefect_server`): its logs
and artifact reach the API, `eventlake pipeline` reuses the recorded server, says what the
start-up cost and exits with a code that says records were quarantined; transient failures of
a task are retried by Prefect's task engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from uuid import UUID

import pytest

import eventlake as el
from tests.samples import SAMPLE_FILES

# What the server sees does not depend on the event log's layout (test_flows.py covers both).
pytestmark = [pytest.mark.integration, pytest.mark.one_layout]

BAD_LINES = [json.dumps({"type": "deposit", "payload": {"amount": 5}, "partition": "acct-9"}),
             "{not json",
             json.dumps({"type": "", "payload": {}, "partition": "acct-9"})]


def _inbox(folder, *, bad: bool):
    folder.mkdir(parents=True)
    for path in SAMPLE_FILES[:2]:
        shutil.copy(path, folder / path.name)
    if bad:
        (folder / "09-bad.jsonl").write_text("\n".join(BAD_LINES) + "\n", encoding="utf-8")
    return folder


def _cli(prefect_server, *args, cwd):
    return subprocess.run([sys.executable, "-m", "eventlake.cli", *args], capture_output=True,
                          text=True, timeout=300, env=prefect_server.env(), cwd=cwd)


def test_a_run_on_the_recorded_server_leaves_its_logs_and_artifact_and_fails_on_quarantine(
        prefect_server, tmp_path):
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from eventlake.flows.pipeline import ARTIFACT_KEY

    inbox = _inbox(tmp_path / "inbox", bad=True)
    lake = tmp_path / "lake"
    done = _cli(prefect_server, "pipeline", "--lake", str(lake), "--inbox", str(inbox),
                "--fail-on-quarantine", "--json", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    report = json.loads(done.stdout)
    # No PREFECT_API_URL in its environment: it found the server through its record.
    assert report["prefect_server"] == prefect_server.url
    assert report["quarantined"] == 2 and report["events"] == 578 + 500 + 1
    assert report["exit_code"] == 5 and 0 <= report["prefect_seconds"] < report["total_seconds"]
    run_id = UUID(report["flow_run_id"])

    with prefect_server.client() as client:
        run = client.read_flow_run(run_id)
        assert run.state is not None and run.state.is_completed()
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    info = [log.message for log in logs if log.level == 20]
    # The CLI keeps Prefect's console at WARNING; the API still gets the INFO summary.
    assert any(m.startswith("pipeline: 1079 events from 3 new file(s), 2 quarantined")
               for m in info), info
    assert any(m.startswith("freshness document: current") for m in info), info
    assert "pipeline: 1079 events" not in done.stderr
    (artifact,) = [a for a in artifacts if a.key == ARTIFACT_KEY]
    rows = {row["metric"]: row["value"] for row in (
        json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data)}
    assert rows["records quarantined"] == "2" and rows["events ingested"] == "1079"

    # Nothing new: nothing quarantined by this run, so exit 0 even with the flag; the
    # text output names the reused server and what Prefect's side took. (With prepare
    # tasks, which find every file landed.)
    again = _cli(prefect_server, "pipeline", "--lake", str(lake), "--inbox", str(inbox),
                 "--fail-on-quarantine", "--prepare-tasks", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"Prefect server {prefect_server.url} (from eventlake server" in again.stderr
    assert "Prefect start-up and overhead" in again.stdout
    assert "Traceback" not in again.stderr
    assert el.Lake.open(lake, create=False).last_seq() == 1079


# Run in a process of its own, on the session's server: Prefect's clients in this process may
# belong to test_flows.py's harness already (task runs reach the API as events, through a
# worker bound to the first server a process talks to).
TAKEN_OVER_ONCE = """
import json, sys
import eventlake.flows.materialize as materialize
from eventlake.errors import RebuildSupersededError

attempts = []
original = materialize.refresh_view

def taken_over_once(lake, view, **kwargs):
    if view.name == "document":
        attempts.append(1)
        if len(attempts) == 1:
            raise RebuildSupersededError("document")
    return original(lake, view, **kwargs)

materialize.refresh_view = taken_over_once
state = materialize.materialize_flow(lake=sys.argv[1], return_state=True)
print(json.dumps({"completed": state.is_completed(), "attempts": len(attempts),
                  "events": state.result()["document"]["events"],
                  "flow_run_id": str(state.state_details.flow_run_id)}))
"""


def test_a_transient_error_of_a_task_is_retried_by_prefect(prefect_server, tmp_path):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    lake = el.Lake.open(tmp_path / "lake")
    lake.append([{"type": "set", "payload": {"target": "a", "value": 1}, "partition": "p"}])
    done = subprocess.run([sys.executable, "-c", TAKEN_OVER_ONCE, str(tmp_path / "lake")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=prefect_server.env(PREFECT_API_URL=prefect_server.url))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["completed"] and report["attempts"] == 2 and report["events"] == 1
    by_run = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(report["flow_run_id"])]))
    deadline = time.monotonic() + 30
    while True:  # the server records task runs from their events, a moment later
        with prefect_server.client() as client:
            runs = [r for r in client.read_task_runs(flow_run_filter=by_run)
                    if r.name == "refresh document"]
        if (runs and runs[0].state and runs[0].state.is_completed()) or (
                time.monotonic() > deadline):
            break
        time.sleep(0.5)
    (task_run,) = runs
    # One task run, run twice: the retry is Prefect's (AwaitingRetry), not a new call.
    assert task_run.run_count == 2 and task_run.state.is_completed()
    assert el.Lake.open(tmp_path / "lake").state("p") == {"a": 1}
