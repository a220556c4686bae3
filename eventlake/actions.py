"""`eventlake.actions`, a name README and DESIGN use: re-exports `eventlake.model.actions`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model.actions import (
    ACTION_TYPES,
    ROOT_PARENT,
    apply_action,
    check_action,
    copy_json,
    is_state_action,
)

__all__ = [
    "ACTION_TYPES",
    "ROOT_PARENT",
    "apply_action",
    "check_action",
    "copy_json",
    "is_state_action",
]
