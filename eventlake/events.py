"""`eventlake.events`, a name README and DESIGN use: re-exports `eventlake.validate.events`.

The code lives in its layer, `eventlake.validate` (the layers: tests/test_architecture.py).
"""

from eventlake.validate import events as _layer
from eventlake.validate.events import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
