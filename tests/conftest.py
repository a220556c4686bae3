"""Shared fixtures: temp lakes and event factories."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Every test that can touch a lake runs once per event-log layout: the lakes it creates take
# the layout from $EVENTLAKE_LAYOUT (subprocesses included). These modules never open a lake.
# `EVENTLAKE_TEST_LAYOUTS=partition_id` (comma-separated) narrows the run while developing.
LAYOUTS = tuple(os.environ.get("EVENTLAKE_TEST_LAYOUTS", "partition_id,buckets:8").split(","))
_LAYOUT_FREE = {"test_actions", "test_architecture", "test_conformance", "test_datafiles",
                "test_deltalog", "test_errors", "test_files", "test_jsoncodec", "test_layout",
                "test_packaging", "test_payloadscan", "test_public_api", "test_settings",
                "test_views"}

# The backends a test taking the `backend` fixture runs on (tests/backends.py);
# `EVENTLAKE_TEST_BACKENDS=local` narrows the run while developing.
BACKENDS = tuple(os.environ.get("EVENTLAKE_TEST_BACKENDS", "local,s3").split(","))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core this process may use, by its CPU affinity and a cgroup
    CPU quota (a container can grant two cores of a host's 64 and still show all 64), and
    no more than memory holds at about 3 GB a worker (its S3 and Prefect servers
    included)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return cores
    return max(1, min(cores, memory // (3 << 30)))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lake_layout" in metafunc.fixturenames and not metafunc.definition.get_closest_marker(
            "one_layout") and metafunc.module.__name__.rsplit(".", 1)[-1] not in _LAYOUT_FREE:
        metafunc.parametrize("lake_layout", LAYOUTS, indirect=True,
                             ids=lambda value: value.split(":")[0])


@pytest.fixture(autouse=True)
def lake_layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The event-log layout of the lakes this test creates (see `LAYOUTS`)."""
    layout = getattr(request, "param", LAYOUTS[0])
    monkeypatch.setenv("EVENTLAKE_LAYOUT", layout)
    if layout.startswith("buckets"):
        import eventlake.store.log

        # Small test batches go to the tail: compact it often, so bucket files are read too.
        monkeypatch.setattr(eventlake.store.log, "TAIL_FILES", 4)
    return layout


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 server on loopback (tests/s3server.py), one for the whole session, started
    by the first test that needs it."""
    from tests.backends import ACCESS_KEY, SECRET
    from tests.s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3server"), access_key=ACCESS_KEY,
                   secret_key=SECRET) as endpoint:
        yield endpoint


def _backend_param(name: str):
    # S3 runs drive a real external server: marked so `-m "not integration"` leaves them out.
    return pytest.param(name, marks=[pytest.mark.integration] if name == "s3" else [], id=name)


@pytest.fixture(params=[_backend_param(name) for name in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The backend suite (tests/backends.py): a test taking this runs on a local lake and on
    a lake on S3, written once against `Backend`."""
    from tests.backends import AWS_VARIABLES, Backend

    if request.param == "local":
        return Backend("local", tmp_path)
    for name in AWS_VARIABLES:  # the lake's options are the test's, not the machine's
        monkeypatch.delenv(name, raising=False)
    return Backend("s3", tmp_path, request.getfixturevalue("s3"))


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def make_lake(lake_path: Path):
    import eventlake as el

    def make(**kwargs):
        return el.Lake.open(lake_path, **kwargs)

    return make


@pytest.fixture
def lake(make_lake):
    return make_lake()


@pytest.fixture
def make_events():
    """Factory of simple domain events: deposits and withdrawals over n partitions."""

    def make(count: int, *, partitions: int = 5, seed: int = 0, prefix: str = "acct"):
        rng = random.Random(seed)
        out = []
        for i in range(count):
            kind = rng.choice(["deposit", "deposit", "withdrawal"])
            out.append({
                "type": kind,
                "payload": {"amount": rng.randint(1, 500), "currency": rng.choice(["EUR", "USD"]),
                            "n": i},
                "partition": f"{prefix}-{rng.randrange(partitions)}",
            })
        return out

    return make
