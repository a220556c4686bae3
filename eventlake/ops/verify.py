"""`verify`: refold partitions from scratch and diff them against the stored view rows."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from eventlake.fold.folds import FAILURE, rows_for, start_state
from eventlake.fold.sqlfold import select_rows
from eventlake.model import jsoncodec
from eventlake.model.views import ReducerView, SqlView, View
from eventlake.store.viewstore import ViewStore, logical_columns

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

__all__ = ["Difference", "VerifyReport", "verify_view"]

_IGNORED = {"updated_at"}


@dataclass(frozen=True)
class Difference:
    view: str
    partition: str
    group: tuple[Any, ...]
    field: str
    stored: Any
    expected: Any

    def __str__(self) -> str:
        group = f" group {self.group}" if self.group else ""
        return (f"{self.view}: partition {self.partition!r}{group} field {self.field!r}: "
                f"stored {_short(self.stored)}, expected {_short(self.expected)}")


@dataclass(frozen=True)
class VerifyReport:
    view: str
    watermark: int
    partitions_checked: int
    differences: tuple[Difference, ...]
    # False when the view has no table yet (never materialized): nothing was compared.
    built: bool = True

    @property
    def ok(self) -> bool:
        return not self.differences


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def verify_view(lake: LakeParts, view: View, *, sample: int | None = None,
                partitions: Sequence[str] | None = None, seed: int | None = None
                ) -> VerifyReport:
    """Compare stored rows with a from-scratch fold up to the view's watermark.

    Checks every partition the log holds, or `sample` of them chosen at random, or the given
    `partitions`. Reads only the chosen partitions' events. A failed partition must have
    failed at the same event in the from-scratch fold, with the same state before it.
    """
    store = ViewStore(lake.storage, view)
    if not store.exists():
        # Nothing stored to compare, but the log it would be folded from is still read: a
        # damaged event log is an error here, never an "ok".
        lake.log.last_seq(lake.log.snapshot())
        return VerifyReport(view.name, 0, 0, (), built=False)
    # Rows built from another definition of this version are refused, not diffed.
    snap = store.check_definition(store.snapshot())
    watermark = store.watermark(snap)
    if partitions is None:
        known = lake.log.partitions()
        if sample is not None and sample < len(known):
            known = sorted(random.Random(seed).sample(known, sample))
        partitions = known
    chosen = list(partitions)
    stored = store.scan_logical().filter(pl.col("partition_id").is_in(chosen)).collect()
    events = (lake.events(chosen, until_seq=watermark).collect() if watermark and chosen
              else pl.DataFrame())
    # A SQL view is checked against its SELECT run from scratch, whatever its strategy.
    fold = select_rows if isinstance(view, SqlView) else rows_for
    expected = fold(view, events) if events.height else pl.DataFrame()  # type: ignore[arg-type]
    columns = [c for c in logical_columns(view) if c not in _IGNORED]
    if isinstance(view, SqlView):
        columns = [*view.columns, FAILURE]
    typed = view.column_types if isinstance(view, ReducerView) else None
    if typed is not None:
        # A typed state is compared as the state it reads back as, exactly (as `state`).
        columns = ["state", *(c for c in columns if c not in typed)]
    keys = ["partition_id"] + ([] if isinstance(view, ReducerView)
                               else list(view.group_columns))
    differences: list[Difference] = []
    stored_rows = {tuple(r[k] for k in keys): r for r in stored.iter_rows(named=True)}
    expected_rows = ({tuple(r[k] for k in keys): r for r in expected.iter_rows(named=True)}
                     if expected.height else {})
    for key in sorted(set(stored_rows) | set(expected_rows), key=lambda k: tuple(map(str, k))):
        got, want = stored_rows.get(key), expected_rows.get(key)
        group = key[1:]
        if got is None or want is None:
            differences.append(Difference(view.name, key[0], group, "(row)",
                                          "missing" if got is None else "present",
                                          "present" if want is not None else "missing"))
            continue
        for column in columns:
            if column in keys:
                continue
            a, b = got.get(column), want.get(column)
            if column == "state":
                # Exact (2**64 is not the float it rounds to) and any depth.
                assert isinstance(view, ReducerView)
                a, b = start_state(view, key[0], got), start_state(view, key[0], want)
                where = jsoncodec.first_difference(a, b)
                if where is not None:
                    differences.append(Difference(view.name, key[0], group, where, a, b))
            elif column == FAILURE:
                # The event a partition failed at must agree; the error text may not (a
                # RecursionError's message depends on the stack it met).
                if _failed_at(a) != _failed_at(b):
                    differences.append(Difference(view.name, key[0], group, column, a, b))
            elif not _same(a, b):
                differences.append(Difference(view.name, key[0], group, column, a, b))
    return VerifyReport(view.name, watermark, len(chosen), tuple(differences))


def _failed_at(text: Any) -> tuple[int, str] | None:
    if text is None:
        return None
    info = json.loads(str(text))
    return int(info["seq"]), str(info["type"])
