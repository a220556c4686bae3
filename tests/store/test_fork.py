"""A lake in a forked child process: a clear `ForkedProcessError`, never a Rust panic.

deltalake's runtime belongs to the process that started it; in a child forked afterwards every
deltalake call panics (`pyo3_runtime.PanicException`, a BaseException). The storage seam
refuses first, with an error that says to use the `spawn` or `forkserver` start method, and
those work. Each scenario runs in a fresh interpreter (a script of its own), so what the parent did
before forking is exactly what the scenario says, whatever this test process did before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import eventlake as el

REPO = Path(__file__).resolve().parents[2]

# The child reports what it got as one JSON line on stdout; the parent prints the child's
# report after joining it (a forked child's stdout is the parent's).
_HARNESS = """
import json, multiprocessing, os, sys, traceback
import eventlake as el

ROOT = sys.argv[1]
EVENT = {"type": "set", "partition": "p", "payload": {"target": "n", "value": 1}}

def child(report):
    try:
        lake = el.Lake.open(ROOT)
        lake.append([EVENT])
        got = {"ok": True, "state": lake.state("p"), "events": lake.events().collect().height}
    except BaseException as exc:
        got = {"ok": False, "mro": [c.__name__ for c in type(exc).__mro__],
               "message": str(exc), "lines": len(str(exc).splitlines())}
    with open(report, "w") as handle:
        json.dump(got, handle)

def run_child(method, report):
    if method == "os.fork":
        pid = os.fork()
        if pid == 0:
            try:
                child(report)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    process = multiprocessing.get_context(method).Process(target=child, args=(report,))
    process.start()
    process.join(120)
    return process.exitcode
"""


def _scenario(tmp_path: Path, before_fork: str, method: str) -> dict:
    root = tmp_path / "lake"
    report = tmp_path / "report.json"
    script = _HARNESS + textwrap.dedent(before_fork) + textwrap.dedent(f"""
        if __name__ == "__main__":
            code = run_child({method!r}, {str(report)!r})
            print(json.dumps({{"exit": code}}))
        """)
    # A file, not `python -c`: spawned children import the parent's main module.
    path = tmp_path / "scenario.py"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run([sys.executable, str(path), str(root)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"exit": 0}, done.stderr
    got = json.loads(report.read_text())
    got["stderr"] = done.stderr
    return got


OPENED_A_LAKE = """
if __name__ == "__main__":
    parent = el.Lake.open(ROOT)
    parent.append([EVENT])
"""


@pytest.mark.parametrize("method", ["fork", "os.fork"])
def test_a_child_forked_after_the_parent_opened_a_lake_gets_a_clear_error(tmp_path, method):
    got = _scenario(tmp_path, OPENED_A_LAKE, method)
    assert not got["ok"], got
    assert got["mro"][:2] == ["ForkedProcessError", "EventlakeError"], got
    assert "RuntimeError" in got["mro"]
    message = got["message"]
    assert got["lines"] == 1
    assert "forked" in message and "'spawn'" in message and "'forkserver'" in message
    # Refused before deltalake was called: no Rust panic reached the child's stderr.
    assert "panicked" not in got["stderr"] and "PanicException" not in got["stderr"]
    # The parent's lake is untouched by the refused child.
    assert el.Lake.open(tmp_path / "lake").events().collect().height == 1


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_children_append_and_read(tmp_path, method):
    got = _scenario(tmp_path, OPENED_A_LAKE, method)
    assert got["ok"], got
    assert got["events"] == 2
    assert got["state"] == {"n": 1}
    events = el.Lake.open(tmp_path / "lake").events().collect()
    assert events.get_column("seq").to_list() == [1, 2]


def test_a_fork_after_deltalake_was_used_directly_is_converted_from_the_panic(tmp_path):
    """The parent used deltalake without eventlake, so the check was never armed: the
    child's call panics inside deltalake, and the seam turns the panic into the same error."""
    got = _scenario(tmp_path, """
        if __name__ == "__main__":
            import subprocess
            from deltalake import DeltaTable
            # The lake is made by another process; this one only reads it with deltalake.
            subprocess.run([sys.executable, "-c", "import eventlake as el, sys; "
                            "el.Lake.open(sys.argv[1])", ROOT], check=True)
            assert DeltaTable(ROOT + "/events").version() == 0
        """, "fork")
    assert not got["ok"], got
    assert got["mro"][:2] == ["ForkedProcessError", "EventlakeError"], got
    assert got["lines"] == 1 and "'spawn'" in got["message"]


def test_a_fork_before_any_lake_was_opened_works(tmp_path):
    """Nothing to refuse when the parent never started deltalake's runtime."""
    got = _scenario(tmp_path, "", "fork")
    assert got["ok"], got
    assert got["events"] == 1
