"""`eventlake.actions`, a name README and DESIGN use: re-exports `eventlake.model.actions`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model import actions as _layer
from eventlake.model.actions import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
