"""`eventlake.jsoncodec`, a name README and DESIGN use: re-exports `eventlake.validate.jsoncodec`.

The code lives in its layer, `eventlake.validate` (the layers: tests/test_architecture.py).
"""

from eventlake.validate import jsoncodec as _layer
from eventlake.validate.jsoncodec import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
