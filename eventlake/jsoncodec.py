"""`eventlake.jsoncodec`, a name README and DESIGN use: re-exports `eventlake.validate.jsoncodec`.

The code lives in its layer, `eventlake.validate` (the layers: tests/test_architecture.py).
"""

from eventlake.validate.jsoncodec import (
    INT_LIMIT,
    check_object_key,
    dumps,
    equal,
    first_difference,
    loads,
)

__all__ = [
    "INT_LIMIT",
    "check_object_key",
    "dumps",
    "equal",
    "first_difference",
    "loads",
]
