"""The `eventlake` console script (see `eventlake.cli._app`): re-exports its `__all__`."""

from eventlake.cli import _app
from eventlake.cli._app import *  # noqa: F403 (exactly the names of its __all__)

__all__ = _app.__all__
