"""Shared fixtures: temp lakes and event factories."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


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
