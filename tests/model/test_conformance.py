"""Runs the insieme action conformance cases against `apply_action`.

Two copies of MIT-licensed test data from yuusoft-org/insieme live in this repository, each
with its LICENSE and a README saying where it came from:

- `tests/conformance/insieme-actions/`: the subset the eventlake team shares between
  implementations (`<action>.yaml`, one case per YAML document);
- `tests/conformance/insieme-spec/`: insieme's whole `spec/actions/*.spec.yaml` suite at commit
  7488def, unchanged (its `puty` format starts each file with documents describing the suite).

Every case of both runs. `EVENTLAKE_CONFORMANCE_DIR` points the test at another folder in
either format instead, e.g. a newer copy to compare with. A missing folder is a failure, never
a skip, so CI cannot pass vacuously.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventlake.errors import InvalidEventError
from eventlake.model.actions import ACTION_TYPES, apply_action

ENV_VAR = "EVENTLAKE_CONFORMANCE_DIR"
HERE = Path(__file__).resolve().parents[1] / "conformance"
SUBSET_DIR = HERE / "insieme-actions"
SPEC_DIR = HERE / "insieme-spec"
# What each folder must hold at least: a copy that lost cases fails instead of shrinking.
EXPECTED_CASES = {SUBSET_DIR: 80, SPEC_DIR: 116}


def conformance_dirs() -> list[Path]:
    override = os.environ.get(ENV_VAR)
    return [Path(override)] if override else [SUBSET_DIR, SPEC_DIR]


def case_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def load_cases(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(action, case) pairs of one file; the action comes from `exportName` or the file name."""
    action = path.name.split(".")[0]
    cases = []
    with path.open(encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if not isinstance(doc, dict):
                continue
            if "case" not in doc:
                action = doc.get("exportName", action)  # a puty suite header
                continue
            cases.append((action, doc))
    return cases


def collect() -> list[Any]:
    params = []
    for folder in conformance_dirs():
        for path in case_files(folder):
            for number, (action, case) in enumerate(load_cases(path)):
                name = case.get("case", f"#{number}")
                params.append(
                    pytest.param(action, case, id=f"{folder.name}/{path.name}::{name}"))
    if not params:
        # An empty parametrization would be reported as skipped; this param fails instead.
        params.append(pytest.param(None, None, id="no-conformance-cases"))
    return params


def missing_message(folder: Path) -> str:
    return (
        f"no insieme conformance cases found in {folder} "
        f"(set {ENV_VAR} to a folder holding the *.yaml case files)"
    )


@pytest.mark.parametrize("folder", conformance_dirs(), ids=lambda p: p.name)
def test_conformance_folder_exists(folder: Path) -> None:
    assert folder.is_dir(), missing_message(folder)
    assert case_files(folder), f"{folder} holds no *.yaml case files"
    assert (folder / "LICENSE").is_file(), f"{folder} lacks the LICENSE of the copied cases"
    count = sum(len(load_cases(path)) for path in case_files(folder))
    assert count >= EXPECTED_CASES.get(folder, 1), f"{folder} holds only {count} cases"


@pytest.mark.parametrize(
    "path",
    [path for folder in conformance_dirs() for path in case_files(folder)]
    or [pytest.param(None, id="no-files")],
    ids=lambda p: f"{p.parent.name}/{p.name}" if isinstance(p, Path) else p,
)
def test_each_file_has_cases_of_one_known_action(path: Path | None) -> None:
    assert path is not None, missing_message(path or HERE)
    cases = load_cases(path)
    assert cases, f"{path} holds no cases"
    assert {action for action, _ in cases} <= set(ACTION_TYPES), path


@pytest.mark.skipif(ENV_VAR in os.environ, reason="compares the two copies kept in the repo")
def test_the_shared_subset_is_contained_in_the_full_suite() -> None:
    def by_name(folder: Path) -> dict[tuple[str, str], str]:
        return {(action, case["case"]): json.dumps(case, sort_keys=True)
                for path in case_files(folder) for action, case in load_cases(path)}

    subset, suite = by_name(SUBSET_DIR), by_name(SPEC_DIR)
    assert subset, missing_message(SUBSET_DIR)
    missing = [key for key, text in subset.items() if suite.get(key) != text]
    assert not missing, f"cases of the subset missing or changed in the full suite: {missing}"


@pytest.mark.parametrize(("action", "case"), collect())
def test_case(action: str | None, case: dict[str, Any] | None) -> None:
    assert action is not None and case is not None, missing_message(HERE)
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
