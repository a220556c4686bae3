"""The flow commands' exit codes, and what they say without the `flows` extra."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from eventlake.cli.flow_commands import EXIT_QUARANTINED, pipeline_exit_code

# Prefect made unimportable in a fresh interpreter (a None in sys.modules stops the import
# as a missing package would): the path a user without `eventlake[flows]` takes.
WITHOUT_PREFECT = ("import sys; sys.modules['prefect'] = None; "
                   "from eventlake.cli import main; sys.exit(main(sys.argv[1:]))")

# Serving, the server and the commands' exit codes do not depend on the event log's layout.
pytestmark = pytest.mark.one_layout


@pytest.mark.parametrize("command", [["serve"], ["pipeline"], ["server", "status"]])
def test_without_the_flows_extra_one_line_and_exit_2(command, tmp_path):
    done = subprocess.run([sys.executable, "-c", WITHOUT_PREFECT, *command],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: `eventlake {command[0]}` needs the 'flows' extra")
    assert "pip install 'eventlake[flows]'" in done.stderr
    as_json = subprocess.run([sys.executable, "-c", WITHOUT_PREFECT, *command, "--json"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert as_json.returncode == 2
    assert json.loads(as_json.stderr)["exit_code"] == 2


def _summary(*, quarantined=0, unreadable=0, failed=None):
    return SimpleNamespace(quarantined=quarantined, unreadable=unreadable,
                           failed=failed or {"document": 0})


def test_pipeline_exit_codes():
    assert EXIT_QUARANTINED == 5
    assert pipeline_exit_code(_summary(), fail_on_quarantine=True) == 0
    assert pipeline_exit_code(_summary(quarantined=2), fail_on_quarantine=False) == 0
    assert pipeline_exit_code(_summary(quarantined=2), fail_on_quarantine=True) == 5
    assert pipeline_exit_code(_summary(unreadable=1), fail_on_quarantine=True) == 5
    # Failed partitions say 4, as `materialize` does, with or without the flag.
    failed = {"document": 0, "counts": 1}
    assert pipeline_exit_code(_summary(failed=failed), fail_on_quarantine=False) == 4
    assert pipeline_exit_code(_summary(quarantined=1, failed=failed),
                              fail_on_quarantine=True) == 4
