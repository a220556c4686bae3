"""View definitions: fingerprints tell a changed definition from the same one."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

from eventlake.model.views import (
    DOCUMENT_VIEW,
    Agg,
    AggregateView,
    ReducerView,
    definition_fingerprint,
)
from tests.samples import REPO

TOTALS = dict(name="totals", version=1, group_by=["type", "currency"], where=["deposit"],
              aggregates={"n": "count", "total": Agg("sum", "amount")})


def _reduce(state, event):
    """Counts events."""
    return {"n": state.get("n", 0) + 1}


def _reduce_with_local(state, event):
    count = state.get("n", 0)
    return {"n": count + 1}


def _reduce_with_renamed_local(state, event):
    total = state.get("n", 0)
    return {"n": total + 1}


def _reduce_plus_two(state, event):
    return {"n": state.get("n", 0) + 2}


def _reduce_uses_set(state, event):
    return state if event["type"] in {"a", "b", "c", "d", "e"} else {"n": 1}


def _fp(**changes):
    return definition_fingerprint(AggregateView(**(TOTALS | changes)))


def _rfp(reduce=_reduce, **changes):
    spec = dict(name="r", version=1, initial_state=dict, reduce=reduce) | changes
    return definition_fingerprint(ReducerView(**spec))


def test_aggregate_fingerprint_follows_what_it_computes():
    base = _fp()
    assert 0 < base < 2**62
    # Not meaning: name, version, description, the order of aggregates, a "payload." prefix.
    assert _fp(name="other", version=7, description="x") == base
    assert _fp(aggregates={"total": Agg("sum", "payload.amount"), "n": "count"}) == base
    # Meaning: every change to keys, aggregates, dtypes or the filter.
    changed = [
        _fp(group_by=["type"]),
        _fp(where=["deposit", "withdrawal"]),
        _fp(where=None),
        _fp(aggregates={"n": "count", "total": Agg("sum", "amount"),
                        "largest": Agg("max", "amount")}),
        _fp(aggregates={"n": "count", "total": Agg("sum", "amount", dtype="decimal")}),
        _fp(aggregates={"n": "count", "total": Agg("max", "amount")}),
        _fp(aggregates={"n": "count", "sum": Agg("sum", "amount")}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_reducer_fingerprint_follows_code_types_and_skipping():
    base = _rfp()
    assert _rfp(name="renamed", description="other") == base
    assert _rfp(reduce=_reduce_plus_two) != base
    assert _rfp(initial_state=list) != base
    assert _rfp(initial_state=lambda: {"n": 0}) != _rfp(initial_state=lambda: {"n": 1})
    assert _rfp(types=("a",)) != base and _rfp(types=("a",)) == _rfp(types=["a"])
    assert _rfp(skip_invalid=True) != base
    # Closures and partial arguments are part of the code's meaning.
    def make(step):
        def reduce(state, event):
            return {"n": state.get("n", 0) + step}
        return reduce

    assert _rfp(reduce=make(1)) == _rfp(reduce=make(1)) != _rfp(reduce=make(2))

    def stepped(state, event, step):
        return {"n": state.get("n", 0) + step}

    assert _rfp(reduce=functools.partial(stepped, step=1)) != _rfp(
        reduce=functools.partial(stepped, step=2))


def test_a_docstring_or_a_local_name_is_not_a_change():
    assert _rfp(reduce=_reduce_with_local) == _rfp(reduce=_reduce_with_renamed_local)
    # Same bytecode and constants once the docstring is set aside.
    def with_doc(state, event):
        """A docstring."""
        return {"n": state.get("n", 0) + 1}

    def without_doc(state, event):
        return {"n": state.get("n", 0) + 1}

    assert _rfp(reduce=with_doc) == _rfp(reduce=without_doc)


FINGERPRINTS = """
import sys
sys.path.insert(0, {tests!r})
sys.path.insert(0, {samples!r})
import views as samples
import test_views
from eventlake.views import DOCUMENT_VIEW, definition_fingerprint as f
print(f(DOCUMENT_VIEW), f(samples.balances), f(samples.totals),
      test_views._rfp(reduce=test_views._reduce_uses_set))
"""


def test_fingerprints_are_the_same_in_every_process():
    sys.path.insert(0, str(REPO / "data" / "samples"))
    try:
        import views as samples
    finally:
        sys.path.pop(0)
    here = " ".join(str(n) for n in (
        definition_fingerprint(DOCUMENT_VIEW), definition_fingerprint(samples.balances),
        definition_fingerprint(samples.totals), _rfp(reduce=_reduce_uses_set)))
    script = FINGERPRINTS.format(tests=str(REPO / "tests" / "model"),
                                 samples=str(REPO / "data" / "samples"))
    for seed in ("0", "1", "12345"):
        # String hashing (and so set order in constants) differs per PYTHONHASHSEED.
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120,
                              check=True)
        assert done.stdout.strip() == here
