"""`eventlake.views`, a name README and DESIGN use: re-exports `eventlake.model.views`.

The code lives in its layer, `eventlake.model` (the layers: tests/test_architecture.py).
"""

from eventlake.model.views import (
    AGG_FUNCTIONS,
    DOCUMENT_VIEW,
    EVENT_COLUMNS,
    FAILURE,
    Agg,
    AggregateView,
    ReducerView,
    View,
    definition_fingerprint,
    document_view,
    fold,
    reducer_view,
)

__all__ = [
    "AGG_FUNCTIONS",
    "DOCUMENT_VIEW",
    "EVENT_COLUMNS",
    "FAILURE",
    "Agg",
    "AggregateView",
    "ReducerView",
    "View",
    "definition_fingerprint",
    "document_view",
    "fold",
    "reducer_view",
]
