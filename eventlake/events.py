"""`eventlake.events`, a name README and DESIGN use: re-exports `eventlake.validate.events`.

The code lives in its layer, `eventlake.validate` (the layers: tests/test_architecture.py).
"""

from eventlake.validate.events import (
    DEFAULT_LIMITS,
    EVENT_SCHEMA,
    INPUT_COLUMNS,
    Limits,
    NormalizedBatch,
    check_columns,
    check_partition,
    check_payload_type,
    decode_payload,
    normalize_batch,
    payload_from_arrow,
)

__all__ = [
    "DEFAULT_LIMITS",
    "EVENT_SCHEMA",
    "INPUT_COLUMNS",
    "Limits",
    "NormalizedBatch",
    "check_columns",
    "check_partition",
    "check_payload_type",
    "decode_payload",
    "normalize_batch",
    "payload_from_arrow",
]
