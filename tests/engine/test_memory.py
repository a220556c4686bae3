"""Bounded memory: a full rebuild of a lake much larger than the memory it is allowed.

The rebuild runs in a subprocess whose address space is capped with `setrlimit(RLIMIT_AS)` at
its size after start-up plus a budget. The lake's event payloads add up to several times that
budget, so loading the history whole cannot fit; the same rebuild without chunking must fail
under the same cap, which shows the cap really bites.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import eventlake as el
from eventlake.ops.verify import verify_view

BUDGET_MB = 320
PAYLOAD_BYTES = 8_000
EVENTS = 100_000

REBUILD = textwrap.dedent(
    """
    import json, resource, sys
    import eventlake as el

    lake = el.Lake.open(sys.argv[1], create=False)
    lake.events().head(1).collect()  # start-up work (imports, thread pools) before the cap
    status = open("/proc/self/status").read()
    size = int(status.split("VmSize:")[1].split()[0]) * 1024
    cap = size + int(sys.argv[3]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    result = lake.materialize(["document"], rebuild=True, chunk_events=int(sys.argv[2]))
    print(json.dumps({"events": result["document"].events,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    """
)


def _build(root, events: int, payload_bytes: int) -> float:
    lake = el.Lake.open(root)
    rng = np.random.default_rng(7)
    filler = "x" * payload_bytes
    batch = 20_000
    for start in range(0, events, batch):
        index = pa.array(np.arange(start, start + batch))
        keys = pc.cast(pc.bit_wise_and(index, 15), pa.string())
        payload = pc.binary_join_element_wise(
            '{"target":"k', keys, '","value":"', pc.cast(index, pa.string()), filler, '"}', "")
        partitions = pc.binary_join_element_wise(
            "p", pc.cast(pa.array(rng.integers(0, 64, batch)), pa.string()), "")
        lake.append(pa.table({"type": pa.repeat(pa.scalar("set"), batch), "payload": payload,
                              "partition": partitions}))
    return events * payload_bytes / 2**20


def _rebuild(root, chunk: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", REBUILD, str(root), str(chunk), str(BUDGET_MB)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_rebuild_of_lake_larger_than_memory_cap(tmp_path):
    root = tmp_path / "lake"
    raw_mb = _build(root, EVENTS, PAYLOAD_BYTES)
    assert raw_mb > 2 * BUDGET_MB  # the history is well beyond what the process may hold

    bounded = _rebuild(root, chunk=2_000)
    assert bounded.returncode == 0, bounded.stderr[-2000:]
    report = json.loads(bounded.stdout.strip().splitlines()[-1])
    assert report["events"] == EVENTS
    lake = el.Lake.open(root)
    assert verify_view(lake, lake.view("document"), sample=8, seed=1).ok

    # Control: folding the whole history in one go does not fit under the same cap.
    unbounded = _rebuild(root, chunk=10**9)
    assert unbounded.returncode != 0
