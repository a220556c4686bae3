"""Where the repository and its sample inbox are, for tests that read them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO", "SAMPLES", "SAMPLE_FILES"]

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
# The files an inbox run lands from the samples folder, in landing order.
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".jsonl", ".csv", ".parquet"})
