"""Acceptance (issue 19, item 7, deep states): a document 5,000 levels deep end to end.

A chain of `treePush` events, each payload shallow (`{"target": "lib", "value": {"id": ...},
"options": {"parent": <previous id>}}`), builds a tree 5,000 levels deep: far beyond orjson's
255 levels and the ~1,000 at which Python's `json` and `==` raise RecursionError. It must fold,
be stored, and read back exactly: the stored text is compared with the expected text built
here by string concatenation (no JSON library involved), and the reads with that text. And
`verify` compares such states exactly (a tampered leaf deep inside is found).
"""

from __future__ import annotations

import json
from pathlib import Path

import deltalake
import pytest

import eventlake as el
from eventlake.model import jsoncodec
from eventlake.ops.verify import verify_view

DEPTH = 5_000


def expected_text(depth: int) -> str:
    """The document view's state after the chain, as the canonical compact JSON text."""
    tree = "[]"
    for i in reversed(range(depth)):
        tree = f'[{{"id":"n{i}","children":{tree}}}]'
    items = ",".join(f'"n{i}":{{"v":{i}}}' for i in range(depth))
    return f'{{"lib":{{"tree":{tree},"items":{{{items}}}}}}}'


def chain(depth: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [
        {"type": "set", "partition": "deep", "payload": {"target": "lib",
                                                         "value": {"tree": [], "items": {}}}}]
    parent = "_root"
    for i in range(depth):
        events.append({"type": "treePush", "partition": "deep",
                       "payload": {"target": "lib", "value": {"id": f"n{i}", "v": i},
                                   "options": {"parent": parent}}})
        parent = f"n{i}"
    return events


def test_expected_text_is_what_python_json_writes_for_a_shallow_chain() -> None:
    # The reference builder itself, checked where Python's json can still follow it.
    state = json.loads(expected_text(50))
    node = state["lib"]["tree"]
    for i in range(50):
        assert [n["id"] for n in node] == [f"n{i}"]
        node = node[0]["children"]
    assert node == [] and state["lib"]["items"]["n49"] == {"v": 49}
    assert json.dumps(state, separators=(",", ":")) == expected_text(50)


# Depth is the fold's and the view store's business, not the log layout's: one layout.
@pytest.mark.one_layout
def test_a_document_5000_levels_deep_folds_stores_and_reads_back_exactly(tmp_path: Path
                                                                         ) -> None:
    lake = el.Lake.open(tmp_path / "lake")
    lake.append(chain(DEPTH))
    lake.append([{"type": "set", "partition": "other", "payload": {"target": "n", "value": 1}}])
    result = lake.materialize(["document"])
    assert result  # the refresh committed
    want = expected_text(DEPTH)

    # The stored row, read with deltalake: the text itself, no decoder in between.
    rows = deltalake.DeltaTable(str(tmp_path / "lake" / "views" / "document")
                                ).to_pyarrow_table(columns=["partition_id", "state"]).to_pylist()
    stored = {row["partition_id"]: row["state"] for row in rows}
    assert stored["deep"] == want
    assert stored["other"] == '{"n":1}'

    # Reads: the state from the stored row, and the view as scanned and queried.
    assert jsoncodec.dumps(lake.state("deep")) == want
    assert lake.state("other") == {"n": 1}
    scanned = dict(lake.scan("document").select("partition_id", "state").collect().iter_rows())
    assert scanned["deep"] == want
    assert dict(lake.sql("select partition_id, state from document").fetchall())["deep"] == want

    # One more event on top of the stored row: read lagging (row + fold), then refreshed.
    lake.append([{"type": "treePush", "partition": "deep",
                  "payload": {"target": "lib", "value": {"id": "last", "v": -1},
                              "options": {"parent": f"n{DEPTH - 1}"}}}])
    deeper = want.replace('"children":[]', '"children":[{"id":"last","children":[]}]', 1)
    deeper = deeper[:-3] + ',"last":{"v":-1}}}}'
    assert jsoncodec.dumps(lake.state("deep")) == deeper
    lake.materialize(["document"])
    assert jsoncodec.dumps(lake.state("deep")) == deeper


# Depth is the fold's and the view store's business, not the log layout's: one layout.
@pytest.mark.one_layout
def test_verify_compares_deep_states_exactly(tmp_path: Path) -> None:
    # 1,500 levels: past the recursion of Python's json and `==`, cheaper to refold twice.
    depth = 1_500
    lake = el.Lake.open(tmp_path / "lake")
    lake.append(chain(depth))
    lake.materialize(["document"])
    assert verify_view(lake, lake.views["document"]).ok
    table = deltalake.DeltaTable(str(tmp_path / "lake" / "views" / "document"))
    tampered = expected_text(depth).replace(f'"v":{depth - 1}}}', f'"v":{depth - 1}.0}}')
    table.update(updates={"state": f"'{tampered}'"}, predicate="partition_id = 'deep'")
    [difference] = verify_view(lake, lake.views["document"]).differences
    assert difference.field == f"state.lib.items.n{depth - 1}.v"
