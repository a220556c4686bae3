"""eventlake: an event-sourced lakehouse on Delta Lake.

The package namespace is lazy: `import eventlake` is cheap, and heavy libraries (deltalake,
polars, duckdb, pyarrow) load only when a name that needs them is first touched. That keeps
`eventlake --help` fast.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

from eventlake import _lazy
from eventlake import errors as _errors
from eventlake._version import __version__
from eventlake.errors import *  # noqa: F403 (every error class: exactly `errors.__all__`)

# Polars' allocator (jemalloc) keeps by default every range of address space it once mapped,
# to reuse later: over a long rebuild the ranges fragment and the process's address space
# creeps far past what it holds (+300 MB against flat resident memory on 200k 8 KB events),
# so it fails under an address-space limit (`ulimit -v`, RLIMIT_AS) that its data fits.
# Giving freed ranges back cost nothing measurable (tests/engine/test_memory.py, README
# "Bounded memory"). It takes effect only if Polars is not loaded yet (Polars adds its own
# settings to the variable on import); a `retain` setting already there wins.
_JEMALLOC = _os.environ.get("_RJEM_MALLOC_CONF", "")
if "retain:" not in _JEMALLOC:
    _os.environ["_RJEM_MALLOC_CONF"] = ",".join(filter(None, (_JEMALLOC, "retain:false")))

if TYPE_CHECKING:
    from eventlake.engine.materialize import MaterializeResult, PartitionFailure
    from eventlake.engine.relayout import RelayoutResult
    from eventlake.lake import AppendResult, Lake, LakeInfo
    from eventlake.model.actions import apply_action
    from eventlake.model.columns import ColumnType
    from eventlake.model.events import Limits
    from eventlake.model.layout import Layout
    from eventlake.model.views import (
        Agg,
        AggregateView,
        ReducerView,
        SqlView,
        document_view,
        reducer_view,
    )
    from eventlake.ops.erase import EraseResult, TableErasure
    from eventlake.ops.freshness import Freshness, LaggingPartition, ViewFreshness
    from eventlake.ops.restore import RestoreResult
    from eventlake.repository import Repository
    from eventlake.store.log import EventLog
    from eventlake.store.storage import Snapshot, Storage


# These and the errors above hold every class that a public signature names (the walk in
# tests/test_public_api.py checks it), so whatever a user annotates with imports from here.
_LAZY = {
    "apply_action": "eventlake.model.actions",
    "Limits": "eventlake.model.events",
    "Lake": "eventlake.lake",
    "AppendResult": "eventlake.lake",
    "LakeInfo": "eventlake.lake",
    "Layout": "eventlake.model.layout",
    "EventLog": "eventlake.store.log",
    "MaterializeResult": "eventlake.engine.materialize",
    "PartitionFailure": "eventlake.engine.materialize",
    "Repository": "eventlake.repository",
    "RelayoutResult": "eventlake.engine.relayout",
    "RestoreResult": "eventlake.ops.restore",
    "EraseResult": "eventlake.ops.erase",
    "TableErasure": "eventlake.ops.erase",
    "Freshness": "eventlake.ops.freshness",
    "LaggingPartition": "eventlake.ops.freshness",
    "ViewFreshness": "eventlake.ops.freshness",
    "Snapshot": "eventlake.store.storage",
    "Storage": "eventlake.store.storage",
    "Agg": "eventlake.model.views",
    "ColumnType": "eventlake.model.columns",
    "AggregateView": "eventlake.model.views",
    "ReducerView": "eventlake.model.views",
    "SqlView": "eventlake.model.views",
    "document_view": "eventlake.model.views",
    "reducer_view": "eventlake.model.views",
}

__all__ = [
    "Agg",
    "AggregateView",
    "AppendResult",
    "ColumnType",
    "EraseResult",
    "EventLog",
    "Freshness",
    "LaggingPartition",
    "Lake",
    "LakeInfo",
    "Layout",
    "Limits",
    "MaterializeResult",
    "PartitionFailure",
    "ReducerView",
    "RelayoutResult",
    "Repository",
    "RestoreResult",
    "Snapshot",
    "SqlView",
    "Storage",
    "TableErasure",
    "ViewFreshness",
    "__version__",
    "apply_action",
    "document_view",
    "reducer_view",
]
# The errors are public by being in `eventlake.errors`: one list of them, its `__all__`.
__all__ += _errors.__all__
__all__.sort()


def __getattr__(name: str) -> Any:
    return _lazy.attribute(globals(), _LAZY, name)
