"""Views over the sample inbox: what `eventlake pipeline` refreshes besides `document`.

Loaded through `[tool.eventlake] views` in pyproject.toml (or `--views data/samples/views.py`).
"""

from __future__ import annotations

from typing import Any

from eventlake.views import Agg, AggregateView, ReducerView

_SIGN = {"deposit": 1, "withdrawal": -1}


def _balance(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    sign = _SIGN.get(event["type"])
    if sign is None:
        return state
    amount = event["payload"].get("amount", 0)
    return {"balance": state["balance"] + sign * amount,
            "transactions": state["transactions"] + 1}


# v2: typed columns, so SQL sees `balance` and `transactions` as BIGINT columns and orders
# numerically (v1 stored the state as one JSON text; the version bump rebuilds lakes built
# with v1). A state that does not fit (a fractional amount) stops the refresh, naming it.
balances = ReducerView(
    name="balances", version=2, reduce=_balance,
    initial_state=lambda: {"balance": 0, "transactions": 0},
    columns={"balance": "int64", "transactions": "int64"},
    description="account balance in cents: deposits minus withdrawals",
)

# v2: amounts are integer cents, so `total` and `largest` are Int64 (v1 stored floats; the
# version bump rebuilds lakes built with v1).
totals = AggregateView(
    name="totals", version=2, group_by=["type", "currency"], where=["deposit", "withdrawal"],
    aggregates={"n": "count", "total": Agg("sum", "amount", dtype="int64"),
                "mean": Agg("avg", "amount"), "largest": Agg("max", "amount", dtype="int64"),
                "last_ref": Agg("last", "ref")},
    description="per account, type and currency: count, sum, mean, max and last reference",
)

VIEWS = [balances, totals]
