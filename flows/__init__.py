"""Prefect flows and deployments for eventlake.

    flows.ingest       ingest_flow: inbox files (JSON Lines, CSV, Parquet) -> batches, once each
    flows.materialize  materialize_flow: refresh views, one task per view
    flows.pipeline     pipeline_flow: ingest, then materialize, with a summary artifact
    flows.maintenance  maintenance_flow: compaction, checkpoints, vacuum
    flows.serve        deployments with schedules (`python -m flows.serve`)
    flows.settings     task runner choice (threads or Dask), retry policy, quiet defaults

Importing this package does not import Prefect; the flow objects load on first access
(`flows.pipeline_flow`). It does set Prefect's privacy defaults (analytics off) unless the
environment says otherwise, before Prefect reads its settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flows.settings import privacy_defaults

if TYPE_CHECKING:
    from flows.ingest import ingest_flow
    from flows.maintenance import maintenance_flow
    from flows.materialize import materialize_flow
    from flows.pipeline import PipelineSummary, pipeline_flow, run_pipeline

privacy_defaults()

_LAZY = {
    "ingest_flow": "flows.ingest",
    "materialize_flow": "flows.materialize",
    "pipeline_flow": "flows.pipeline",
    "PipelineSummary": "flows.pipeline",
    "run_pipeline": "flows.pipeline",
    "maintenance_flow": "flows.maintenance",
}

__all__ = [
    "PipelineSummary",
    "ingest_flow",
    "maintenance_flow",
    "materialize_flow",
    "pipeline_flow",
    "run_pipeline",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
