"""Prefect flows and deployments for eventlake, installed as `eventlake.flows`.

    eventlake.flows.ingest       ingest_flow: inbox files (JSON Lines, CSV, Parquet) -> batches
    eventlake.flows.materialize  materialize_flow: refresh views, one task per view
    eventlake.flows.pipeline     pipeline_flow: ingest, then materialize, with a summary artifact
    eventlake.flows.maintenance  maintenance_flow: compaction, checkpoints, vacuum
    eventlake.flows.serve        deployments with schedules (`python -m eventlake.flows.serve`)
    eventlake.flows.server       a background Prefect server (`eventlake server start`)
    eventlake.flows.settings     task runner (threads or Dask), retry policy, flow settings

The code lives in the repository's top-level `flows/` folder; pyproject.toml maps that folder
to the package `eventlake.flows` (`package-dir`), so no top-level `flows` module is installed
to collide with a user's own. The modules here import each other relatively: the same text
then type-checks as the folder (`mypy eventlake flows`) and runs as the installed package.

Importing this package does not import Prefect; the flow objects load on first access
(`eventlake.flows.pipeline_flow`). It does set Prefect's privacy defaults (analytics off)
unless the environment says otherwise, before Prefect reads its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventlake import _lazy

from .settings import privacy_defaults

if TYPE_CHECKING:
    from .ingest import ingest_flow
    from .maintenance import maintenance_flow
    from .materialize import materialize_flow
    from .pipeline import PipelineSummary, pipeline_flow, run_pipeline

privacy_defaults()

# Name -> the module of this package that defines it (relative to the package).
_LAZY = {
    "ingest_flow": ".ingest",
    "materialize_flow": ".materialize",
    "pipeline_flow": ".pipeline",
    "PipelineSummary": ".pipeline",
    "run_pipeline": ".pipeline",
    "maintenance_flow": ".maintenance",
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
    return _lazy.attribute(globals(), _LAZY, name)
