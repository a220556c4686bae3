"""`eventlake.files`, a name README and DESIGN use: re-exports `eventlake.ingest.files`.

The code lives in its layer, `eventlake.ingest` (the layers: tests/test_architecture.py).
"""

from eventlake.ingest import files as _layer
from eventlake.ingest.files import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _layer.__all__
