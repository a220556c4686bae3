"""`eventlake.layout`, a name README and DESIGN use: re-exports `eventlake.model.layout`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model import layout as _layer
from eventlake.model.layout import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
