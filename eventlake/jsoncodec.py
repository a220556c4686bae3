"""`eventlake.jsoncodec`, a name README and DESIGN use: re-exports `eventlake.model.jsoncodec`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model import jsoncodec as _layer
from eventlake.model.jsoncodec import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
