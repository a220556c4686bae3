"""Typed reducer view definitions: the type names, what is refused, what the fingerprint holds."""

from __future__ import annotations

import pytest

from eventlake.errors import ViewDefinitionError
from eventlake.model.columns import column_type
from eventlake.model.views import ReducerView, definition_fingerprint, reducer_view


def _reduce(state, event):
    return state


def _view(**options):
    return ReducerView(name="typed", version=1, initial_state=dict, reduce=_reduce, **options)


@pytest.mark.parametrize("spec, name", [
    ("int64", "int64"), ("Int64", "int64"), ("float64", "float64"), ("bool", "bool"),
    ("Boolean", "bool"), ("string", "string"), ("utf8", "string"), ("str", "string"),
    ("json", "json"), ("list[string]", "list[string]"), ("List<Int64>", "list[int64]"),
    ("list[list[json]]", "list[list[json]]"), (" list[ bool ] ", "list[bool]"),
])
def test_accepted_type_names_and_their_canonical_form(spec, name):
    assert column_type(spec).name == name


@pytest.mark.parametrize("spec", ["int", "integer", "decimal", "timestamp", "list", "list[]",
                                  "list[int]", "map[string]", "", 5, None, "struct<a: int64>"])
def test_an_unknown_type_is_refused_when_the_view_is_defined(spec):
    with pytest.raises(ViewDefinitionError) as caught:
        _view(columns={"balance": spec})
    message = str(caught.value)
    assert message.startswith(f"view 'typed': column 'balance' has unknown type {spec!r}")
    assert "int64, float64, bool, string, json, list[T]" in message


@pytest.mark.parametrize("columns", [{}, ["balance"], "int64",
                                     {"state": "json"}, {"last_seq": "int64"},
                                     {"partition_id": "string"}, {"mismatches": "int64"},
                                     {"_hidden": "int64"}, {"with space": "int64"}, {1: "int64"}])
def test_bad_column_names_and_shapes_are_refused(columns):
    with pytest.raises(ViewDefinitionError, match="view 'typed'"):
        _view(columns=columns)


def test_on_mismatch_is_checked_and_needs_columns():
    with pytest.raises(ViewDefinitionError, match="on_mismatch must be 'error' or 'null'"):
        _view(columns={"n": "int64"}, on_mismatch="skip")
    with pytest.raises(ViewDefinitionError, match="needs columns"):
        _view(on_mismatch="null")
    assert _view(columns={"n": "int64"}).on_mismatch == "error"


def test_the_fingerprint_follows_columns_and_on_mismatch():
    base = definition_fingerprint(_view(columns={"a": "int64", "b": "list[string]"}))
    # Not meaning: the order of the columns, the spelling of a type name.
    assert definition_fingerprint(_view(columns={"b": "List<String>", "a": "Int64"})) == base
    for changed in ({"a": "float64", "b": "list[string]"}, {"a": "int64"},
                    {"a": "int64", "b": "list[string]", "c": "json"},
                    {"a": "int64", "c": "list[string]"}):
        assert definition_fingerprint(_view(columns=changed)) != base, changed
    assert definition_fingerprint(_view(columns={"a": "int64", "b": "list[string]"},
                                        on_mismatch="null")) != base
    # An untyped view's fingerprint is what it was before typed views existed.
    assert definition_fingerprint(_view()) == definition_fingerprint(
        ReducerView("typed", 1, dict, _reduce)) != base


def test_the_decorator_takes_columns_too():
    @reducer_view("counts", columns={"n": "int64"}, on_mismatch="null")
    def counts(state, event):
        return {"n": state["n"] + 1}

    assert counts.column_types == {"n": column_type("int64")}
    assert counts.on_mismatch == "null"
    assert _view().column_types is None
