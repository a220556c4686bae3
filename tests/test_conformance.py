"""Runs the insieme action conformance cases against `apply_action`.

The cases are a copy kept in this repository (`tests/conformance/insieme-actions/`, MIT
licensed test data from yuusoft-org/insieme; see the README and LICENSE there), one YAML file
per action type. `EVENTLAKE_CONFORMANCE_DIR` points the test at another copy, e.g. a newer one
to compare with. A missing folder is a failure, never a skip, so CI cannot pass vacuously.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventlake.actions import apply_action
from eventlake.errors import InvalidEventError

ENV_VAR = "EVENTLAKE_CONFORMANCE_DIR"
DEFAULT_DIR = Path(__file__).resolve().parent / "conformance" / "insieme-actions"


def conformance_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else DEFAULT_DIR


def load_cases(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def case_files() -> list[Path]:
    folder = conformance_dir()
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def collect() -> list[Any]:
    params = []
    for path in case_files():
        for number, case in enumerate(load_cases(path)):
            name = case.get("case", f"#{number}") if isinstance(case, dict) else f"#{number}"
            params.append(pytest.param(path.stem, case, id=f"{path.name}::{name}"))
    if not params:
        # An empty parametrization would be reported as skipped; this param fails instead.
        params.append(pytest.param(None, None, id="no-conformance-cases"))
    return params


def missing_message() -> str:
    return (
        f"no insieme conformance cases found in {conformance_dir()} "
        f"(set {ENV_VAR} to the folder holding the *.yaml case files)"
    )


def test_conformance_folder_exists() -> None:
    folder = conformance_dir()
    assert folder.is_dir(), missing_message()
    assert case_files(), f"{folder} holds no *.yaml case files"


@pytest.mark.parametrize(
    "path", case_files() or [pytest.param(None, id="no-files")], ids=lambda p: getattr(p, "name", p)
)
def test_each_file_has_cases(path: Path | None) -> None:
    assert path is not None, missing_message()
    assert len(load_cases(path)) > 0, f"{path} holds no cases"


@pytest.mark.parametrize(("action", "case"), collect())
def test_case(action: str | None, case: dict[str, Any] | None) -> None:
    assert action is not None and case is not None, missing_message()
    assert "in" in case and len(case["in"]) == 2, f"malformed case: {case!r}"
    assert ("out" in case) != ("throws" in case), "a case needs exactly one of out/throws"
    state, payload = case["in"]
    state_before, payload_before = copy.deepcopy(state), copy.deepcopy(payload)

    if "throws" in case:
        with pytest.raises(InvalidEventError) as caught:
            apply_action(state, action, payload)
        assert str(case["throws"]) in str(caught.value)
    else:
        result = apply_action(state, action, payload)
        assert result == case["out"]

    assert state == state_before, "apply_action mutated the input state"
    assert payload == payload_before, "apply_action mutated the payload"
