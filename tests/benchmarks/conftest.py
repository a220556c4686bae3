"""The bench picks each lake's layout itself (both layouts are cases of one run), so the
suite-wide run of every test once per `$EVENTLAKE_LAYOUT` would only run the same bench twice
here: the first layout's run is kept, the others are deselected."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: str | None = None
    repeated = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or _HERE not in Path(str(item.fspath)).parents:
            continue
        layout = callspec.params.get("lake_layout")
        kept = layout if kept is None else kept
        if layout != kept:
            repeated.append(item)
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = [item for item in items if item not in repeated]
