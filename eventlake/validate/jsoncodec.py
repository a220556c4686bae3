"""The strict JSON codec under its former name: it lives in the model, `eventlake.model.jsoncodec`.

The codec is pure and shared by every layer that reads or writes payload and state text
(validation, folds, the engine, verify, ingest), so it sits in the layer they all may import.
This module re-exports its public names for the callers that still import them from here.
"""

from eventlake.model import jsoncodec as _codec
from eventlake.model.jsoncodec import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _codec.__all__
