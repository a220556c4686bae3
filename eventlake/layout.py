"""`eventlake.layout`, a name README and DESIGN use: re-exports `eventlake.model.layout`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model.layout import (
    BUCKET_COLUMN,
    DEFAULT_LOG_BUCKETS,
    LAYOUTS,
    MAX_BUCKETS,
    RELAYOUT_ADVICE_PARTITIONS,
    Layout,
    LayoutName,
    bucket_ids,
    bucket_of,
    buckets_of,
    relayout_advice,
)

__all__ = [
    "BUCKET_COLUMN",
    "DEFAULT_LOG_BUCKETS",
    "LAYOUTS",
    "MAX_BUCKETS",
    "RELAYOUT_ADVICE_PARTITIONS",
    "Layout",
    "LayoutName",
    "bucket_ids",
    "bucket_of",
    "buckets_of",
    "relayout_advice",
]
