"""Behaviour of `apply_action`: insieme's action semantics, eventlake's payload checks, purity.

The example tables restate, case by case, the behaviours pinned down by insieme's
`spec/actions/*.spec.yaml` suite (set, unset, init, treePush, treeDelete, treeUpdate, treeMove),
with our own fixtures. The property tests compare `apply_action` with a deliberately naive
reference (deep copy, then mutate, as insieme itself does) and check that inputs are never
mutated and results never alias the payload.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError, UnknownActionError
from eventlake.model.actions import (
    ACTION_TYPES,
    apply_action,
    check_action,
    copy_json,
    is_state_action,
)

# --- fixtures for tree cases -----------------------------------------------------------------


def node(node_id: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"id": node_id, "children": list(children)}


def label(node_id: str) -> dict[str, Any]:
    kind = "file" if node_id.startswith(("doc", "file")) else "folder"
    return {"title": node_id.upper(), "kind": kind}


def walk_ids(nodes: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for item in nodes:
        found.append(item["id"])
        found.extend(walk_ids(item["children"]))
    return found


def lib(*roots: dict[str, Any], items: dict[str, Any] | None = None) -> dict[str, Any]:
    """A state holding one tree under `lib`; items default to a label per node in the tree."""
    tree = list(roots)
    if items is None:
        items = {node_id: label(node_id) for node_id in walk_ids(tree)}
    return {"lib": {"tree": tree, "items": items}}


def labels(*node_ids: str) -> dict[str, Any]:
    return {node_id: label(node_id) for node_id in node_ids}


def run(state: dict[str, Any], action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """apply_action, plus the check every example shares: the inputs come back untouched."""
    state_copy, payload_copy = copy.deepcopy(state), copy.deepcopy(payload)
    result = apply_action(state, action, payload)
    assert state == state_copy and payload == payload_copy
    return result


# --- set ------------------------------------------------------------------------------------

PROFILE = {"who": {"card": {"nick": "ann", "years": 40}}}

SET_CASES = [
    ("number over number", {"a": "x", "n": 1}, {"target": "n", "value": 2}, {"a": "x", "n": 2}),
    ("object over number", {"n": 1}, {"target": "n", "value": {"k": 1}}, {"n": {"k": 1}}),
    ("string", {"s": "old", "n": 1}, {"target": "s", "value": "new"}, {"s": "new", "n": 1}),
    ("true", {"on": False}, {"target": "on", "value": True}, {"on": True}),
    ("false", {"on": True}, {"target": "on", "value": False}, {"on": False}),
    ("null", {"n": 1}, {"target": "n", "value": None}, {"n": None}),
    ("the string undefined", {"n": 1}, {"target": "n", "value": "undefined"}, {"n": "undefined"}),
    ("zero", {"n": 9}, {"target": "n", "value": 0}, {"n": 0}),
    ("empty string", {"s": "x"}, {"target": "s", "value": ""}, {"s": ""}),
    ("new root key", {"a": 1}, {"target": "b", "value": "v"}, {"a": 1, "b": "v"}),
    (
        "nested leaf",
        PROFILE,
        {"target": "who.card.years", "value": 41},
        {"who": {"card": {"nick": "ann", "years": 41}}},
    ),
    (
        "four levels deep",
        {"a": {"b": {"c": {"d": 1, "e": 2}}}},
        {"target": "a.b.c.d", "value": 5},
        {"a": {"b": {"c": {"d": 5, "e": 2}}}},
    ),
    (
        "creates the missing part of a path",
        {"who": {"nick": "ann"}},
        {"target": "who.card.years", "value": 3},
        {"who": {"nick": "ann", "card": {"years": 3}}},
    ),
    (
        "creates a whole missing path",
        {"keep": 1},
        {"target": "p.q.r.s", "value": "deep"},
        {"keep": 1, "p": {"q": {"r": {"s": "deep"}}}},
    ),
    (
        "replace=true swaps the object",
        PROFILE,
        {
            "target": "who.card",
            "value": {"nick": "bo", "mail": "b@x"},
            "options": {"replace": True},
        },
        {"who": {"card": {"nick": "bo", "mail": "b@x"}}},
    ),
    (
        "replace=true with only one key",
        PROFILE,
        {"target": "who.card", "value": {"mail": "m"}, "options": {"replace": True}},
        {"who": {"card": {"mail": "m"}}},
    ),
    (
        "replace=true with an empty object",
        PROFILE,
        {"target": "who.card", "value": {}, "options": {"replace": True}},
        {"who": {"card": {}}},
    ),
    (
        "replace=false merges objects",
        PROFILE,
        {"target": "who.card", "value": {"mail": "m", "city": "c"}, "options": {"replace": False}},
        {"who": {"card": {"nick": "ann", "years": 40, "mail": "m", "city": "c"}}},
    ),
    (
        "merge overrides existing keys",
        PROFILE,
        {"target": "who.card", "value": {"years": 41}, "options": {"replace": False}},
        {"who": {"card": {"nick": "ann", "years": 41}}},
    ),
    (
        "merge is the default without options",
        PROFILE,
        {"target": "who.card", "value": {"mail": "m"}},
        {"who": {"card": {"nick": "ann", "years": 40, "mail": "m"}}},
    ),
    (
        "merge is the default with empty options",
        PROFILE,
        {"target": "who.card", "value": {"mail": "m"}, "options": {}},
        {"who": {"card": {"nick": "ann", "years": 40, "mail": "m"}}},
    ),
    (
        "merging an empty object keeps everything",
        PROFILE,
        {"target": "who.card", "value": {}, "options": {"replace": False}},
        PROFILE,
    ),
    (
        "merge is shallow",
        {"u": {"p": {"a": 1, "b": 2}, "q": {"z": 0}}},
        {"target": "u", "value": {"p": {"b": 3, "c": 4}, "r": {"y": 1}}},
        {"u": {"p": {"b": 3, "c": 4}, "q": {"z": 0}, "r": {"y": 1}}},
    ),
    (
        "replace=false with a primitive replaces",
        PROFILE,
        {"target": "who.card", "value": "gone", "options": {"replace": False}},
        {"who": {"card": "gone"}},
    ),
    (
        "replace=false with null replaces",
        PROFILE,
        {"target": "who.card", "value": None, "options": {"replace": False}},
        {"who": {"card": None}},
    ),
    (
        "object over an array replaces",
        {"who": {"card": [1, 2]}},
        {"target": "who.card", "value": {"nick": "x"}, "options": {"replace": False}},
        {"who": {"card": {"nick": "x"}}},
    ),
    (
        "replace=true with an array",
        PROFILE,
        {"target": "who.card", "value": [7, 8], "options": {"replace": True}},
        {"who": {"card": [7, 8]}},
    ),
    (
        "an array on the path becomes an index-keyed object",
        {"rows": [{"v": "a"}, {"v": "b"}]},
        {"target": "rows.1.v", "value": "B"},
        {"rows": {"0": {"v": "a"}, "1": {"v": "B"}}},
    ),
    (
        "null on the path is replaced by an object",
        {"who": None},
        {"target": "who.nick", "value": "z"},
        {"who": {"nick": "z"}},
    ),
]


@pytest.mark.parametrize(
    ("state", "payload", "expected"), [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES]
)
def test_set(state: dict[str, Any], payload: dict[str, Any], expected: dict[str, Any]) -> None:
    assert run(state, "set", payload) == expected


@pytest.mark.parametrize("options", [None, {"replace": False}, {}])
def test_set_array_without_replace_is_rejected(options: dict[str, Any] | None) -> None:
    payload: dict[str, Any] = {"target": "who.card", "value": [1, 2]}
    if options is not None:
        payload["options"] = options
    with pytest.raises(InvalidEventError, match="requires value to be a plain object") as err:
        run(PROFILE, "set", payload)
    assert err.value.field == "value"
    assert "set with replace=false requires value to be a plain object, not an array" in str(
        err.value
    )


# --- unset ----------------------------------------------------------------------------------

UNSET_CASES = [
    ("root primitive", {"a": 1, "b": 2}, "a", {"b": 2}),
    ("only root key", {"a": 1}, "a", {}),
    ("whole sub-object", PROFILE, "who.card", {"who": {}}),
    ("nested leaf", PROFILE, "who.card.years", {"who": {"card": {"nick": "ann"}}}),
    ("deep leaf", {"a": {"b": {"c": {"d": 1, "e": 2}}}}, "a.b.c.e", {"a": {"b": {"c": {"d": 1}}}}),
    (
        "five levels",
        {"a": {"b": {"c": {"d": {"e": 1}}}}},
        "a.b.c.d.e",
        {"a": {"b": {"c": {"d": {}}}}},
    ),
    ("missing root key", {"a": 1}, "zz", {"a": 1}),
    ("missing nested key", {"u": {"n": 1}}, "u.card.years", {"u": {"n": 1}}),
    ("missing parent path", {"a": 1}, "x.y.z", {"a": 1}),
    ("last key leaves an empty object", {"u": {"n": 1}}, "u.n", {"u": {}}),
    ("array-valued key", {"u": {"n": 1, "xs": [1, 2]}}, "u.xs", {"u": {"n": 1}}),
    ("empty target does nothing", {"a": 1, "b": 2}, "", {"a": 1, "b": 2}),
    ("null-valued key", {"u": {"a": None, "b": False}}, "u.a", {"u": {"b": False}}),
    ("key holding 'undefined'", {"u": {"a": "undefined", "b": 1}}, "u.a", {"u": {"b": 1}}),
    ("false-valued key", {"u": {"a": True, "b": False}}, "u.b", {"u": {"a": True}}),
    ("string key", {"u": {"a": "x", "b": "y"}}, "u.b", {"u": {"a": "x"}}),
    ("number key", {"u": {"a": 1, "b": 2, "c": 3}}, "u.c", {"u": {"a": 1, "b": 2}}),
    (
        "siblings survive",
        {"cfg": {"db": {"host": "h"}, "cache": {"ttl": 1}}},
        "cfg.db",
        {"cfg": {"cache": {"ttl": 1}}},
    ),
    (
        "deep sibling trees survive",
        {"m": {"auth": {"p": {"g": {"on": 1}, "h": {"on": 2}}}, "st": {"l": True}}},
        "m.auth.p.h",
        {"m": {"auth": {"p": {"g": {"on": 1}}}, "st": {"l": True}}},
    ),
    ("through null", {"u": None}, "u.n", {"u": None}),
    ("digit key name", {"u": {"12": "a", "34": "b"}}, "u.12", {"u": {"34": "b"}}),
    ("from an empty object", {"u": {}}, "u.n", {"u": {}}),
    ("through zero does nothing", {"u": 0}, "u.n", {"u": 0}),
    ("through an empty string does nothing", {"u": ""}, "u.n", {"u": ""}),
    ("an array on the path becomes index-keyed", {"u": [{"a": 1}]}, "u.0.a", {"u": {"0": {}}}),
]


@pytest.mark.parametrize(
    ("state", "target", "expected"), [c[1:] for c in UNSET_CASES], ids=[c[0] for c in UNSET_CASES]
)
def test_unset(state: dict[str, Any], target: str, expected: dict[str, Any]) -> None:
    assert run(state, "unset", {"target": target}) == expected


# --- init -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "value"),
    [
        ({"old": {"x": 1}, "prefs": {"t": "l"}}, {"lib": {"items": {}, "tree": []}, "p": {"t": 1}}),
        ({}, {"app": {"v": "1.0.0", "cfg": {"n": 5}}, "users": [{"id": 1}, {"id": 2}]}),
        ({"db": {"host": "h", "cred": {"u": "a"}}, "c": {"ttl": 1}}, {"status": "up", "ts": 12}),
        ({"old": {"x": 1}}, {}),
    ],
    ids=["replaces everything", "from empty", "complex to simple", "to empty"],
)
def test_init(state: dict[str, Any], value: dict[str, Any]) -> None:
    result = run(state, "init", {"value": value})
    assert result == value
    result.setdefault("extra", []).append(1)
    assert "extra" not in value


# --- treePush -------------------------------------------------------------------------------

PUSH_CASES = [
    ("into an empty target", {"lib": {}}, "dir1", {}, [node("dir1")]),
    (
        "child of a node",
        lib(node("dir1")),
        "doc1",
        {"parent": "dir1"},
        [node("dir1", node("doc1"))],
    ),
    (
        "after a sibling",
        lib(node("dir1"), node("dir2")),
        "dir3",
        {"position": {"after": "dir1"}},
        [node("dir1"), node("dir3"), node("dir2")],
    ),
    (
        "before a sibling",
        lib(node("dir1"), node("dir2")),
        "dir3",
        {"position": {"before": "dir2"}},
        [node("dir1"), node("dir3"), node("dir2")],
    ),
    ("first", lib(node("dir1")), "dir2", {"position": "first"}, [node("dir2"), node("dir1")]),
    ("first by default", lib(node("dir1")), "dir2", {}, [node("dir2"), node("dir1")]),
    ("last", lib(node("dir1")), "dir2", {"position": "last"}, [node("dir1"), node("dir2")]),
    (
        "'undefined' is first",
        lib(node("dir1")),
        "dir2",
        {"position": "undefined"},
        [node("dir2"), node("dir1")],
    ),
    (
        "empty position is first",
        lib(node("dir1")),
        "dir2",
        {"position": ""},
        [node("dir2"), node("dir1")],
    ),
    (
        "null position is first",
        lib(node("dir1")),
        "dir2",
        {"position": None},
        [node("dir2"), node("dir1")],
    ),
    ("unknown parent: item only", lib(node("dir1")), "doc1", {"parent": "nope"}, [node("dir1")]),
    (
        "after an unknown sibling goes last",
        lib(node("dir1"), node("dir2")),
        "dir3",
        {"position": {"after": "nope"}},
        [node("dir1"), node("dir2"), node("dir3")],
    ),
    (
        "before an unknown sibling goes first",
        lib(node("dir1"), node("dir2")),
        "dir3",
        {"position": {"before": "nope"}},
        [node("dir3"), node("dir1"), node("dir2")],
    ),
    (
        "anchorless position object: item only",
        lib(node("dir1")),
        "dir2",
        {"position": {}},
        [node("dir1")],
    ),
    (
        "parent without children list",
        {"lib": {"tree": [{"id": "dir1"}], "items": labels("dir1")}},
        "doc1",
        {"parent": "dir1", "position": "last"},
        [node("dir1", node("doc1"))],
    ),
    (
        "same id twice keeps both nodes",
        lib(node("dir1")),
        "dir1",
        {"position": "last"},
        [node("dir1"), node("dir1")],
    ),
]


@pytest.mark.parametrize(
    ("state", "new_id", "options", "tree"),
    [c[1:] for c in PUSH_CASES],
    ids=[c[0] for c in PUSH_CASES],
)
def test_tree_push(
    state: dict[str, Any], new_id: str, options: dict[str, Any], tree: list[dict[str, Any]]
) -> None:
    payload: dict[str, Any] = {"target": "lib", "value": {"id": new_id, **label(new_id)}}
    if options:
        payload["options"] = options
    result = run(state, "treePush", payload)
    expected_items = {**state["lib"].get("items", {}), new_id: label(new_id)}
    assert result == {"lib": {"tree": tree, "items": expected_items}}


def test_tree_push_keeps_every_property_but_id() -> None:
    value = {"id": "dir1", "name": "P", "made": "2024-01-01", "size": 10, "tags": ["a", "b"]}
    result = run({"lib": {}}, "treePush", {"target": "lib", "value": value})
    assert result["lib"]["items"] == {
        "dir1": {"name": "P", "made": "2024-01-01", "size": 10, "tags": ["a", "b"]}
    }
    result["lib"]["items"]["dir1"]["tags"].append("c")
    assert value["tags"] == ["a", "b"]


def test_tree_push_overwrites_an_existing_item() -> None:
    state = lib(node("dir1"), items={"dir1": {"old": True}})
    result = run(state, "treePush", {"target": "lib", "value": {"id": "dir1", "new": 1}})
    assert result["lib"]["items"] == {"dir1": {"new": 1}}


# --- treeDelete -----------------------------------------------------------------------------

BIG = lib(
    node("dir1", node("doc1"), node("sub1", node("doc2"))),
    node("dir2"),
    node("dir3", node("doc3")),
)

DELETE_CASES = [
    ("leaf at root", lib(node("dir1"), node("dir2")), "dir1", [node("dir2")]),
    ("node with descendants", BIG, "dir1", [node("dir2"), node("dir3", node("doc3"))]),
    (
        "middle root",
        BIG,
        "dir2",
        [node("dir1", node("doc1"), node("sub1", node("doc2"))), node("dir3", node("doc3"))],
    ),
    (
        "first of three",
        lib(node("dir1"), node("dir2"), node("dir3")),
        "dir1",
        [node("dir2"), node("dir3")],
    ),
    ("last remaining", lib(node("dir1")), "dir1", []),
    (
        "nested leaf",
        BIG,
        "doc2",
        [node("dir1", node("doc1"), node("sub1")), node("dir2"), node("dir3", node("doc3"))],
    ),
    (
        "nested subtree",
        BIG,
        "sub1",
        [node("dir1", node("doc1")), node("dir2"), node("dir3", node("doc3"))],
    ),
    (
        "three levels below",
        lib(node("dir1", node("sub1", node("sub2", node("doc1"), node("doc2")))), node("dir2")),
        "sub1",
        [node("dir1"), node("dir2")],
    ),
    (
        "one of two children",
        lib(node("dir1", node("doc1"), node("doc2"))),
        "doc1",
        [node("dir1", node("doc2"))],
    ),
    ("unknown id", lib(node("dir1")), "nope", [node("dir1")]),
    ("empty tree", lib(), "nope", []),
]


@pytest.mark.parametrize(
    ("state", "node_id", "tree"), [c[1:] for c in DELETE_CASES], ids=[c[0] for c in DELETE_CASES]
)
def test_tree_delete(state: dict[str, Any], node_id: str, tree: list[dict[str, Any]]) -> None:
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": node_id}})
    assert result == lib(*tree)


def test_tree_delete_creates_missing_tree_and_items() -> None:
    result = run({"lib": {"x": 1}}, "treeDelete", {"target": "lib", "options": {"id": "a"}})
    assert result == {"lib": {"x": 1, "tree": [], "items": {}}}


def test_tree_delete_removes_an_orphan_item() -> None:
    state = lib(node("dir1"), items={"dir1": {}, "loose": {}})
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "loose"}})
    assert result == lib(node("dir1"), items={"dir1": {}})


# --- treeUpdate -----------------------------------------------------------------------------

BEFORE = {"title": "T", "kind": "folder", "color": "blue"}

UPDATE_CASES = [
    (
        "merge",
        {"title": "U", "size": 1},
        False,
        {"title": "U", "kind": "folder", "color": "blue", "size": 1},
    ),
    ("replace", {"title": "U", "tags": ["x"]}, True, {"title": "U", "tags": ["x"]}),
    ("empty merge", {}, False, BEFORE),
    ("empty replace", {}, True, {}),
    (
        "nested object",
        {"meta": {"a": {"b": True}}, "perm": {"r": ["u"]}},
        False,
        {**BEFORE, "meta": {"a": {"b": True}}, "perm": {"r": ["u"]}},
    ),
    ("string", {"note": "txt"}, False, {**BEFORE, "note": "txt"}),
    ("numbers", {"size": 2048, "rev": 2}, False, {**BEFORE, "size": 2048, "rev": 2}),
    ("booleans", {"ro": True, "hidden": False}, False, {**BEFORE, "ro": True, "hidden": False}),
    (
        "arrays",
        {"tags": ["a", "b"], "revs": [1, 2]},
        False,
        {**BEFORE, "tags": ["a", "b"], "revs": [1, 2]},
    ),
    ("nulls", {"color": None, "gone": None}, False, {**BEFORE, "color": None, "gone": None}),
    (
        "mixed",
        {"title": "M", "n": 1, "ro": False, "meta": {"v": 2}},
        False,
        {**BEFORE, "title": "M", "n": 1, "ro": False, "meta": {"v": 2}},
    ),
    ("id is dropped", {"id": "other", "x": 1}, False, {**BEFORE, "x": 1}),
    ("merge without replace option", {"x": 1}, None, {**BEFORE, "x": 1}),
]


@pytest.mark.parametrize(
    ("value", "replace", "expected"),
    [c[1:] for c in UPDATE_CASES],
    ids=[c[0] for c in UPDATE_CASES],
)
def test_tree_update(value: dict[str, Any], replace: bool | None, expected: dict[str, Any]) -> None:
    state = lib(node("dir1"), items={"dir1": BEFORE})
    options: dict[str, Any] = {"id": "dir1"}
    if replace is not None:
        options["replace"] = replace
    result = run(state, "treeUpdate", {"target": "lib", "value": value, "options": options})
    assert result == lib(node("dir1"), items={"dir1": expected})


def test_tree_update_unknown_id_creates_the_item_only() -> None:
    payload = {"target": "lib", "value": {"title": "N"}, "options": {"id": "nope"}}
    result = run(lib(node("dir1")), "treeUpdate", payload)
    assert result == lib(node("dir1"), items={**labels("dir1"), "nope": {"title": "N"}})


def test_tree_update_strips_a_stored_id() -> None:
    state = lib(node("dir1"), items={"dir1": {"id": "dir1", "a": 1}})
    payload = {"target": "lib", "value": {"b": 2}, "options": {"id": "dir1"}}
    assert run(state, "treeUpdate", payload)["lib"]["items"] == {"dir1": {"a": 1, "b": 2}}


# --- treeMove -------------------------------------------------------------------------------

MOVE_BASE = lib(node("dir1", node("doc1")), node("dir2"))
MOVE_TWO = lib(node("dir1", node("doc1")), node("dir2", node("doc2")))

MOVE_CASES = [
    (
        "to root first",
        MOVE_BASE,
        {"id": "doc1", "parent": "_root", "position": "first"},
        [node("doc1"), node("dir1"), node("dir2")],
    ),
    (
        "to root last",
        MOVE_BASE,
        {"id": "doc1", "parent": "_root", "position": "last"},
        [node("dir1"), node("dir2"), node("doc1")],
    ),
    (
        "parent defaults to root",
        MOVE_BASE,
        {"id": "doc1", "position": "first"},
        [node("doc1"), node("dir1"), node("dir2")],
    ),
    (
        "to another parent",
        MOVE_BASE,
        {"id": "doc1", "parent": "dir2", "position": "first"},
        [node("dir1"), node("dir2", node("doc1"))],
    ),
    (
        "position defaults to first",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2"},
        [node("dir1"), node("dir2", node("doc1"), node("doc2"))],
    ),
    (
        "'undefined' position is first",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2", "position": "undefined"},
        [node("dir1"), node("dir2", node("doc1"), node("doc2"))],
    ),
    (
        "null position is first",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2", "position": None},
        [node("dir1"), node("dir2", node("doc1"), node("doc2"))],
    ),
    (
        "last under another parent",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2", "position": "last"},
        [node("dir1"), node("dir2", node("doc2"), node("doc1"))],
    ),
    (
        "after a child of another parent",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2", "position": {"after": "doc2"}},
        [node("dir1"), node("dir2", node("doc2"), node("doc1"))],
    ),
    (
        "before a child of another parent",
        MOVE_TWO,
        {"id": "doc1", "parent": "dir2", "position": {"before": "doc2"}},
        [node("dir1"), node("dir2", node("doc1"), node("doc2"))],
    ),
    (
        "after a root sibling",
        MOVE_BASE,
        {"id": "doc1", "position": {"after": "dir1"}},
        [node("dir1"), node("doc1"), node("dir2")],
    ),
    (
        "before a root sibling",
        MOVE_BASE,
        {"id": "doc1", "position": {"before": "dir2"}},
        [node("dir1"), node("doc1"), node("dir2")],
    ),
    (
        "after an unknown sibling goes last",
        MOVE_BASE,
        {"id": "doc1", "position": {"after": "nope"}},
        [node("dir1"), node("dir2"), node("doc1")],
    ),
    (
        "before an unknown sibling goes first",
        MOVE_BASE,
        {"id": "doc1", "position": {"before": "nope"}},
        [node("doc1"), node("dir1"), node("dir2")],
    ),
    (
        "unknown node changes nothing",
        MOVE_BASE,
        {"id": "nope", "position": "first"},
        [node("dir1", node("doc1")), node("dir2")],
    ),
    (
        "unknown parent drops the node from the tree",
        MOVE_BASE,
        {"id": "doc1", "parent": "nope"},
        [node("dir1"), node("dir2")],
    ),
    (
        "root node under a sibling",
        lib(node("dir1"), node("dir2")),
        {"id": "dir1", "parent": "dir2", "position": "first"},
        [node("dir2", node("dir1"))],
    ),
    (
        "subtree moves along",
        lib(node("dir1", node("sub1", node("doc1"))), node("dir2")),
        {"id": "sub1", "parent": "dir2"},
        [node("dir1"), node("dir2", node("sub1", node("doc1")))],
    ),
    (
        "reorder within a parent",
        lib(node("dir1", node("sub1", node("doc1")), node("sub2"))),
        {"id": "sub1", "parent": "dir1", "position": {"after": "sub2"}},
        [node("dir1", node("sub2"), node("sub1", node("doc1")))],
    ),
    (
        "under its own descendant drops it",
        lib(node("dir1", node("sub1")), node("dir2")),
        {"id": "dir1", "parent": "sub1"},
        [node("dir2")],
    ),
    (
        "anchorless position object drops it",
        MOVE_BASE,
        {"id": "doc1", "position": {}},
        [node("dir1"), node("dir2")],
    ),
]


@pytest.mark.parametrize(
    ("state", "options", "tree"), [c[1:] for c in MOVE_CASES], ids=[c[0] for c in MOVE_CASES]
)
def test_tree_move(state: dict[str, Any], options: dict[str, Any], tree: list[Any]) -> None:
    result = run(state, "treeMove", {"target": "lib", "options": options})
    assert result == {"lib": {"tree": tree, "items": state["lib"]["items"]}}


def test_tree_move_parent_without_children_list() -> None:
    state = {"lib": {"tree": [{"id": "dir1"}, node("doc1")], "items": {}}}
    result = run(state, "treeMove", {"target": "lib", "options": {"id": "doc1", "parent": "dir1"}})
    assert result["lib"]["tree"] == [node("dir1", node("doc1"))]


@pytest.mark.parametrize("target_value", [{}, {"tree": None}, {"tree": {"odd": 1}}])
def test_tree_move_without_a_tree_changes_nothing(target_value: dict[str, Any]) -> None:
    state = {"lib": target_value}
    assert run(state, "treeMove", {"target": "lib", "options": {"id": "a"}}) == state


def test_tree_actions_reach_nested_and_list_targets() -> None:
    state = {"ws": {"views": [{"lib": {}}]}}
    result = run(state, "treePush", {"target": "ws.views.0.lib", "value": {"id": "a"}})
    assert result == {"ws": {"views": [{"lib": {"tree": [node("a")], "items": {"a": {}}}}]}}


# --- errors ---------------------------------------------------------------------------------


def test_action_types() -> None:
    assert set(ACTION_TYPES) == {
        "init",
        "set",
        "unset",
        "treePush",
        "treeDelete",
        "treeUpdate",
        "treeMove",
    }
    assert all(is_state_action(name) for name in ACTION_TYPES)
    assert not is_state_action("nodeInsert")
    assert not is_state_action(None)
    assert not is_state_action(["set"])


@pytest.mark.parametrize("bad", ["push", "Set", "", None, 3, ["set"]])
def test_unknown_action(bad: Any) -> None:
    with pytest.raises(UnknownActionError) as err:
        apply_action({}, bad, {})
    assert repr(bad) in str(err.value)
    assert "treeMove" in str(err.value)
    assert err.value.known == ACTION_TYPES


T = {"lib": {"tree": [node("a")], "items": {"a": {}}}, "num": 5, "txt": "abc", "zero": 0}

INVALID_CASES = [
    ("set", ["not", "a", "dict"], "payload"),
    ("set", {"value": 1}, "target"),
    ("set", {"target": "", "value": 1}, "target"),
    ("set", {"target": 12, "value": 1}, "target"),
    ("set", {"target": "x"}, "value"),
    ("set", {"target": "x", "value": 1, "options": "replace"}, "options"),
    ("set", {"target": "x", "value": 1, "options": None}, "options"),
    ("set", {"target": "num.deeper", "value": 1}, "target"),
    ("set", {"target": "txt.0", "value": 1}, "target"),
    ("unset", {}, "target"),
    ("unset", {"target": {"path": "x"}}, "target"),
    ("unset", {"target": "num.deeper"}, "target"),
    ("init", {}, "value"),
    ("init", {"state": {"a": 1}}, "value"),
    ("init", {"value": [1]}, "value"),
    ("treePush", {"target": "lib", "value": {"name": "n"}}, "value.id"),
    ("treePush", {"target": "lib", "value": {"id": 7}}, "value.id"),
    ("treePush", {"target": "lib", "value": {"id": ""}}, "value.id"),
    ("treePush", {"target": "lib", "value": "a"}, "value"),
    ("treePush", {"target": "lib"}, "value"),
    ("treePush", {"value": {"id": "b"}}, "target"),
    ("treePush", {"target": "missing", "value": {"id": "b"}}, "target"),
    ("treePush", {"target": "missing.deeper", "value": {"id": "b"}}, "target"),
    ("treePush", {"target": "num", "value": {"id": "b"}}, "target"),
    ("treePush", {"target": "lib", "value": {"id": "b"}, "options": 3}, "options"),
    ("treeDelete", {"target": "lib"}, "options"),
    ("treeDelete", {"target": "lib", "options": {}}, "options.id"),
    ("treeDelete", {"target": "nope", "options": {"id": "a"}}, "target"),
    ("treeUpdate", {"target": "lib", "options": {"id": "a"}}, "value"),
    ("treeUpdate", {"target": "lib", "value": ["x"], "options": {"id": "a"}}, "value"),
    ("treeUpdate", {"target": "lib", "value": {}}, "options"),
    ("treeUpdate", {"target": "num", "value": {}, "options": {"id": "a"}}, "target"),
    ("treeUpdate", {"target": "nope", "value": {}, "options": {"id": "a"}}, "target"),
    ("treeMove", {"target": "lib"}, "options"),
    ("treeMove", {"target": "lib", "options": {"parent": "b"}}, "options.id"),
    ("treeMove", {"target": "nope", "options": {"id": "a"}}, "target"),
]


@pytest.mark.parametrize(
    ("action", "payload", "field"),
    INVALID_CASES,
    ids=[f"{c[0]}-{i}-{c[2]}" for i, c in enumerate(INVALID_CASES)],
)
def test_invalid_payloads(action: str, payload: Any, field: str) -> None:
    before = copy.deepcopy(T)
    with pytest.raises(InvalidEventError) as err:
        apply_action(T, action, payload)
    assert err.value.field == field
    assert repr(field) in str(err.value) and action in str(err.value)
    assert T == before


def test_tree_update_without_items_is_rejected() -> None:
    # insieme itself fails here (a TypeError reading items of the target).
    with pytest.raises(InvalidEventError, match="items"):
        apply_action(
            {"lib": {"tree": []}},
            "treeUpdate",
            {"target": "lib", "value": {}, "options": {"id": "a"}},
        )


@pytest.mark.parametrize("shape", [{"tree": "abc"}, {"items": ["x"]}])
def test_tree_push_rejects_a_malformed_tree_object(shape: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError, match="target"):
        apply_action({"lib": shape}, "treePush", {"target": "lib", "value": {"id": "a"}})


def test_state_must_be_an_object() -> None:
    with pytest.raises(InvalidEventError, match="state"):
        apply_action([], "set", {"target": "a", "value": 1})  # type: ignore[arg-type]


# --- properties: purity and agreement with a naive reference ----------------------------------

_MISSING = object()


def _truthy(value: Any) -> bool:
    if value is None or value is False or value == "" or value is _MISSING:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    return True


def _spread(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | str):
        return {str(i): v for i, v in enumerate(value)}
    return {}


class RefError(Exception):
    pass


def ref_find(nodes: Any, node_id: Any) -> tuple[list[Any], int] | None:
    """(list holding the node, index) of the first match, parents before children."""
    if not isinstance(nodes, list):
        return None
    for i, item in enumerate(nodes):
        if isinstance(item, dict) and item.get("id", _MISSING) == node_id:
            return nodes, i
        if isinstance(item, dict):
            found = ref_find(item.get("children"), node_id)
            if found:
                return found
    return None


def ref_place(siblings: list[Any], item: Any, position: Any) -> None:
    ids = [s.get("id") if isinstance(s, dict) else None for s in siblings]
    if position == "last":
        siblings.append(item)
    elif isinstance(position, dict):
        if _truthy(position.get("after")):
            anchor = position["after"]
            siblings.insert(ids.index(anchor) + 1 if anchor in ids else len(siblings), item)
        elif _truthy(position.get("before")):
            anchor = position["before"]
            siblings.insert(ids.index(anchor) if anchor in ids else 0, item)
    elif not isinstance(position, list):
        siblings.insert(0, item)


def ref_insert(data: dict[str, Any], item: Any, options: dict[str, Any]) -> None:
    parent = options.get("parent", "_root")
    position = options.get("position", "first")
    if parent == "_root":
        ref_place(data["tree"], item, position)
        return
    found = ref_find(data["tree"], parent)
    if found:
        host = found[0][found[1]]
        if not _truthy(host.get("children")):
            host["children"] = []
        if not isinstance(host["children"], list):
            raise RefError
        ref_place(host["children"], item, position)


def ref_descendants(item: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for child in item.get("children") or []:
        if isinstance(child, dict) and _truthy(child.get("id")):
            out += [child["id"], *ref_descendants(child)]
    return out


def reference(state: dict[str, Any], action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A naive model of insieme's actions with eventlake's rejections: deep copy, then mutate."""
    s, p = copy.deepcopy(state), copy.deepcopy(payload)
    target = p.get("target")
    if action == "init":
        if not isinstance(p.get("value"), dict):
            raise RefError
        return p["value"]
    if not isinstance(target, str) or (target == "" and action != "unset"):
        raise RefError
    keys = target.split(".")
    opts = p.get("options", {})
    if not isinstance(opts, dict) or (
        action in ("treeDelete", "treeUpdate", "treeMove") and "options" not in p
    ):
        raise RefError
    if action == "set":
        if "value" not in p or (isinstance(p["value"], list) and not _truthy(opts.get("replace"))):
            raise RefError
        cur = s
        for key in keys[:-1]:
            if cur.get(key) is not None and not isinstance(cur.get(key), dict | list):
                raise RefError
            cur[key] = _spread(cur.get(key))
            cur = cur[key]
        old, new = cur.get(keys[-1]), p["value"]
        merge = not _truthy(opts.get("replace")) and isinstance(old, dict)
        cur[keys[-1]] = {**old, **new} if merge and isinstance(new, dict) else new
        return s
    if action == "unset":
        cur = s
        for key in keys[:-1]:
            if not _truthy(cur.get(key, _MISSING)):
                return s
            if not isinstance(cur[key], dict | list):
                raise RefError
            cur[key] = _spread(cur[key])
            cur = cur[key]
        cur.pop(keys[-1], None)
        return s
    data: Any = s
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif (
            isinstance(data, list)
            and key.isdigit()
            and str(int(key)) == key
            and int(key) < len(data)
        ):
            data = data[int(key)]
        else:
            raise RefError
    if not isinstance(data, dict):
        raise RefError
    holder = p.get("value") if action == "treePush" else opts
    node_id = holder.get("id") if isinstance(holder, dict) else None
    if not isinstance(node_id, str) or not node_id:
        raise RefError
    if action in ("treePush", "treeDelete"):
        for key, kind in (("tree", list), ("items", dict)):
            if not _truthy(data.get(key)):
                data[key] = kind()
            if not isinstance(data[key], kind):
                raise RefError
    if action == "treePush":
        data["items"][node_id] = {k: v for k, v in p["value"].items() if k != "id"}
        ref_insert(data, {"id": node_id, "children": []}, opts)
    elif action == "treeDelete":
        found = ref_find(data["tree"], node_id)
        doomed = [node_id]
        if found:
            doomed += ref_descendants(found[0].pop(found[1]))
        for gone in doomed:
            data["items"].pop(gone, None)
    elif action == "treeUpdate":
        if not isinstance(p.get("value"), dict) or not isinstance(data.get("items"), dict):
            raise RefError
        base = {} if _truthy(opts.get("replace")) else _spread(data["items"].get(node_id))
        merged = {**base, **p["value"]}
        merged.pop("id", None)
        data["items"][node_id] = merged
    elif action == "treeMove":
        found = ref_find(data.get("tree"), node_id)
        if not found:
            return copy.deepcopy(state)
        ref_insert(data, found[0].pop(found[1]), opts)
    return s


IDS = st.sampled_from(["a", "b", "c", "d"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["", "s", "undefined"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)
    ),
    max_leaves=6,
)
POSITIONS = st.sampled_from(["first", "last", "", "undefined", None]) | st.fixed_dictionaries(
    {}, optional={"after": IDS | st.just("zz"), "before": IDS | st.just("zz")}
)
TREE_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "parent": st.sampled_from(["_root", "a", "b", "c", "d", "zz"]),
        "position": POSITIONS,
    },
)
# Repeated entries weight the draw towards targets that hold a growing tree.
TREE_TARGETS = st.sampled_from(
    ["lib", "lib", "lib", "lib", "box.lib", "rows.0", "lib.items", "nope"]
)
PLAIN_TARGETS = st.sampled_from(
    ["k", "k.x", "k.x.y", "rows.0", "rows.1.x", "n.x", "nil.x", "lib", "lib.items", "box.q", ""]
)


def _payload(**fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {k: v for k, v in fields.items() if not k.startswith("opt_")},
        optional={k[4:]: v for k, v in fields.items() if k.startswith("opt_")},
    )


PLAIN_ACTIONS = st.one_of(
    st.tuples(
        st.just("set"),
        _payload(
            target=PLAIN_TARGETS,
            value=JSON,
            opt_options=st.fixed_dictionaries({}, optional={"replace": st.booleans() | JSON}),
        ),
    ),
    st.tuples(st.just("unset"), _payload(target=PLAIN_TARGETS)),
    st.tuples(
        st.just("init"),
        _payload(value=st.dictionaries(st.sampled_from(["k", "lib"]), JSON, max_size=2)),
    ),
)
TREE_ACTIONS = st.one_of(
    st.tuples(
        st.just("treePush"),
        _payload(
            target=TREE_TARGETS,
            value=st.fixed_dictionaries({"id": IDS}, optional={"x": JSON, "y": JSON}),
            opt_options=TREE_OPTIONS,
        ),
    ),
    st.tuples(
        st.just("treeDelete"),
        _payload(target=TREE_TARGETS, options=st.fixed_dictionaries({"id": IDS})),
    ),
    st.tuples(
        st.just("treeUpdate"),
        _payload(
            target=TREE_TARGETS,
            value=st.dictionaries(st.sampled_from(["id", "x", "y"]), JSON, max_size=2),
            options=st.fixed_dictionaries({"id": IDS}, optional={"replace": st.booleans()}),
        ),
    ),
    st.tuples(
        st.just("treeMove"),
        _payload(
            target=TREE_TARGETS,
            options=TREE_OPTIONS.flatmap(
                lambda o: st.fixed_dictionaries({"id": IDS}).map(lambda i: {**o, **i})
            ),
        ),
    ),
)
# Mostly tree actions, so trees grow deep enough for moves and cascading deletes to matter.
ACTIONS = st.integers(0, 9).flatmap(lambda n: PLAIN_ACTIONS if n < 2 else TREE_ACTIONS)
STATES = st.fixed_dictionaries(
    {
        # builds() gives fresh objects: JSON states never share a container between two places.
        "lib": st.builds(lambda: {"tree": [], "items": {}}),
        "box": st.builds(lambda: {"lib": {}}),
        "rows": st.lists(st.builds(dict) | JSON, min_size=1, max_size=2),
        "k": JSON,
        "n": st.integers(-1, 1),
        "nil": st.none(),
    }
)


def all_containers(value: Any, seen: dict[int, Any]) -> None:
    if isinstance(value, dict | list) and id(value) not in seen:
        seen[id(value)] = value
        for child in value.values() if isinstance(value, dict) else value:
            all_containers(child, seen)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STATES, st.lists(ACTIONS, max_size=15))
def test_never_mutates_inputs_nor_aliases_the_payload(state: dict[str, Any], actions: Any) -> None:
    for action, payload in actions:
        state_copy, payload_copy = copy.deepcopy(state), copy.deepcopy(payload)
        try:
            result = apply_action(state, action, payload)
        except InvalidEventError:
            result = state
        assert state == state_copy and payload == payload_copy
        # Scribbling over every container of (a copy-on-write result of a private copy of) the
        # state must leave the payload alone.
        scratch = apply_action(copy.deepcopy(state), action, payload) if result is not state else {}
        seen: dict[int, Any] = {}
        all_containers(scratch, seen)
        for container in seen.values():
            if isinstance(container, dict):
                container["__scribble__"] = 1
            else:
                container.append("__scribble__")
        assert payload == payload_copy
        state = result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STATES, st.lists(ACTIONS, max_size=15))
def test_agrees_with_the_naive_reference(state: dict[str, Any], actions: Any) -> None:
    for action, payload in actions:
        try:
            expected = reference(state, action, payload)
        except RefError:
            with pytest.raises(InvalidEventError):
                apply_action(state, action, payload)
            continue
        state = apply_action(state, action, payload)
        assert state == expected, (action, payload)


# --- JavaScript corners insieme shows: TypeErrors refused, inherited names, __proto__ ---------


@pytest.mark.parametrize("children", [{}, {"a": 1}, 5, True])
def test_tree_delete_refuses_children_javascript_cannot_iterate(children: Any) -> None:
    # insieme's treeDelete runs for...of over every children value it meets: a TypeError.
    state = lib(node("a"), items={"a": {}, "b": {}})
    state["lib"]["tree"].insert(0, {"id": "odd", "children": children})
    with pytest.raises(InvalidEventError, match="children"):
        apply_action(state, "treeDelete", {"target": "lib", "options": {"id": "a"}})
    # Met after the node it deletes (pre-order), such children are never read.
    state["lib"]["tree"].reverse()
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "a"}})
    assert result["lib"]["tree"] == [{"id": "odd", "children": children}]


@pytest.mark.parametrize("children", ["", "ab", None, 0, False])
def test_tree_delete_reads_string_and_falsy_children_as_empty(children: Any) -> None:
    state = lib(node("a", {"id": "b", "children": children}), items={"a": {}, "b": {}, "c": {}})
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "a"}})
    assert result == lib(items={"c": {}})


def test_a_null_sibling_before_a_position_anchor_is_refused() -> None:
    # insieme's findIndex reads `n.id` of each sibling up to the anchor: null is a TypeError.
    state = lib(node("a"), items={"a": {}})
    state["lib"]["tree"].insert(0, None)
    after_a = {"target": "lib", "value": {"id": "b"}, "options": {"position": {"after": "a"}}}
    with pytest.raises(InvalidEventError, match="null"):
        apply_action(state, "treePush", after_a)
    state["lib"]["tree"].reverse()  # now the null comes after the anchor: never read
    result = run(state, "treePush", after_a)
    assert result["lib"]["tree"] == [node("a"), node("b"), None]


@pytest.mark.parametrize("position", [{}, {"after": ""}, []])
def test_anchorless_position_under_unlistable_children_changes_no_tree(position: Any) -> None:
    # insieme calls no array method for such a position, so nothing fails and nothing moves.
    state = lib(node("a"), items={"a": {}})
    state["lib"]["tree"][0]["children"] = {"odd": True}
    result = run(state, "treePush", {"target": "lib", "value": {"id": "b"},
                                     "options": {"parent": "a", "position": position}})
    assert result["lib"]["tree"] == state["lib"]["tree"]
    assert result["lib"]["items"] == {"a": {}, "b": {}}
    with pytest.raises(InvalidEventError, match="children"):
        apply_action(state, "treePush", {"target": "lib", "value": {"id": "b"},
                                         "options": {"parent": "a", "position": "last"}})


@pytest.mark.parametrize(("target", "expected"), [
    ("constructor.x", {"k": 1, "constructor": {}}),
    ("toString.valueOf.x", {"k": 1, "toString": {"valueOf": {}}}),
    ("hasOwnProperty", {"k": 1}),  # the last key: `delete` of an inherited name does nothing
    ("nothing.x", {"k": 1}),
])
def test_unset_through_an_inherited_name_creates_an_empty_object(
        target: str, expected: dict[str, Any]) -> None:
    # In JS `state.constructor` is the (truthy) Object function; insieme spreads it: {}.
    assert run({"k": 1}, "unset", {"target": target}) == expected


PROTO_CASES = [
    ("set", {"target": "__proto__", "value": {"polluted": 1}}, "target"),
    ("set", {"target": "a.__proto__.b", "value": 1}, "target"),
    ("unset", {"target": "__proto__.x"}, "target"),
    ("treePush", {"target": "__proto__", "value": {"id": "a"}}, "target"),
    ("treePush", {"target": "lib", "value": {"id": "__proto__"}}, "value.id"),
    ("treeUpdate", {"target": "lib", "value": {}, "options": {"id": "__proto__"}}, "options.id"),
    ("treeDelete", {"target": "lib.__proto__", "options": {"id": "a"}}, "target"),
    ("treeMove", {"target": "__proto__", "options": {"id": "a"}}, "target"),
]


@pytest.mark.parametrize(("action", "payload", "field"), PROTO_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in PROTO_CASES])
def test_proto_as_a_key_an_action_writes_is_refused_whatever_the_state(
        action: str, payload: dict[str, Any], field: str) -> None:
    # JavaScript would replace a prototype (or pollute Object.prototype) instead of a key.
    with pytest.raises(InvalidEventError, match="__proto__") as err:
        check_action(action, payload)
    assert err.value.field == field
    with pytest.raises(InvalidEventError, match="__proto__"):
        apply_action(lib(node("a")), action, payload)


def test_proto_inside_a_value_is_an_ordinary_key() -> None:
    # insieme copies values with spread and structuredClone, which keep own __proto__ keys.
    value = {"__proto__": {"x": 1}}
    assert run({}, "set", {"target": "a", "value": value}) == {"a": value}
    result = run(lib(), "treePush", {"target": "lib", "value": {"id": "a", **value}})
    assert result["lib"]["items"] == {"a": value}
    # A tree node with the id __proto__ is found and deleted; it never becomes a key.
    state = lib(node("__proto__"), items={})
    assert run(state, "treeDelete", {"target": "lib", "options": {"id": "__proto__"}}) == lib()


def test_tree_update_refuses_to_split_a_character_into_utf16_halves() -> None:
    # `{..."x😀"}` in JS indexes UTF-16 code units: a lone surrogate JSON text cannot hold.
    payload = {"target": "lib", "value": {"n": 1}, "options": {"id": "a"}}
    assert run({"lib": {"items": {"a": "xé"}}}, "treeUpdate", payload) == {
        "lib": {"items": {"a": {"0": "x", "1": "é", "n": 1}}}}
    with pytest.raises(InvalidEventError, match="UTF-16"):
        apply_action({"lib": {"items": {"a": "x😀"}}}, "treeUpdate", payload)


# --- numeric node ids: insieme's items are keyed by String(id) --------------------------------

# Node ids a state can hold (set and init write any JSON) and the object key JavaScript makes
# of each, `String(id)`, as printed by node 20 for `o[id] = 1; Object.keys(o)[0]`.
JS_KEYS: list[tuple[Any, str]] = [
    (5, "5"), (-2, "-2"), (1.5, "1.5"), (0.1, "0.1"), (1e21, "1e+21"), (1e-7, "1e-7"),
    (1.2345e-7, "1.2345e-7"), (2**40, "1099511627776"), (1e16, "10000000000000000"),
    (123456789012345680000, "123456789012345680000"), (-0.000001, "-0.000001"),
    (2**53 + 1, "9007199254740992"), (True, "true"), ([], ""), ([1, [2, 3]], "1,2,3"),
    ([None, 1], ",1"), ([{}], "[object Object]"), ({}, "[object Object]"),
    ({"a": 1}, "[object Object]"), ("x", "x"),
]


@pytest.mark.parametrize(("node_id", "key"), JS_KEYS, ids=[k for _, k in JS_KEYS])
def test_tree_delete_removes_the_item_keyed_by_a_descendants_javascript_string(
        node_id: Any, key: str) -> None:
    state = {"lib": {"tree": [node("top", {"id": node_id, "children": []})],
                     "items": {"top": {}, key: {"n": 1}, "keep": {}}}}
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "top"}})
    assert result == {"lib": {"tree": [], "items": {"keep": {}}}}


def test_a_falsy_descendant_id_hides_its_subtree_from_the_cascade() -> None:
    # insieme collects only children with a truthy id, and does not look below the others.
    state = {"lib": {"tree": [node("top", {"id": 0, "children": [node("deep")]})],
                     "items": {"top": {}, "0": {}, "deep": {}}}}
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "top"}})
    assert result["lib"]["items"] == {"0": {}, "deep": {}}


ODD_IDS = st.sampled_from([i for i, _ in JS_KEYS] + [0, "", None, False, "a", "b"])


def _odd_tree(depth: int) -> st.SearchStrategy[list[Any]]:
    leaf = st.fixed_dictionaries({"id": ODD_IDS, "children": st.just([])})
    if depth == 0:
        return st.lists(leaf, max_size=3)
    return st.lists(leaf | st.fixed_dictionaries(
        {"id": ODD_IDS, "children": _odd_tree(depth - 1)}), max_size=3)


def _reference_cascade(node: dict[str, Any]) -> list[str]:
    """The keys insieme's treeDelete drops for `node`'s descendants, from the JS_KEYS table."""
    table = [(json_id, key) for json_id, key in JS_KEYS]
    out: list[str] = []
    for child in node["children"]:
        cid = child["id"]
        if cid in (0, "", None, False) and not isinstance(cid, list | dict):
            continue
        out.append(next(key for json_id, key in table
                        if type(json_id) is type(cid) and json_id == cid)
                   if not isinstance(cid, str) else cid)
        out += _reference_cascade(child)
    return out


@settings(max_examples=200, deadline=None)
@given(_odd_tree(3), st.sets(st.sampled_from([k for _, k in JS_KEYS] + ["0", "a", "b", "z"])))
def test_tree_delete_cascades_over_any_json_ids_like_insieme(
        subtree: list[Any], extra: set[str]) -> None:
    keys = {*extra, "top"}
    state = {"lib": {"tree": [{"id": "top", "children": subtree}],
                     "items": {key: {"k": key} for key in sorted(keys)}}}
    dropped = {"top", *_reference_cascade(state["lib"]["tree"][0])}
    result = run(state, "treeDelete", {"target": "lib", "options": {"id": "top"}})
    assert result == {"lib": {"tree": [], "items": {key: {"k": key} for key in sorted(keys)
                                                     if key not in dropped}}}


# --- deep trees: no recursion anywhere -----------------------------------------------------------

# Three times the depth at which Python recursion fails; building the chain costs depth**2.
DEPTH = 3_000


class _Key(str):
    """Marks a dict key in a token stream."""


def tokens(value: Any) -> list[Any]:
    """An iterative, order-insensitive token stream of a JSON value: equal iff values equal.

    Python's `==`, `copy.deepcopy` and `repr` recurse, so they fail on the deep states here.
    """
    out: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            out.append(("key", str(item)))
        elif isinstance(item, dict):
            out.append(("dict", len(item)))
            for key in sorted(item, reverse=True):
                stack.append(item[key])
                stack.append(_Key(key))
        elif isinstance(item, list):
            out.append(("list", len(item)))
            stack.extend(reversed(item))
        else:
            out.append((type(item).__name__, item))
    return out


def chain(ids: Any, *, tail: list[Any] | None = None) -> list[Any]:
    """The tree [ids[0] > ids[1] > ...], built bottom-up (no recursion); `tail` ends it."""
    children: list[Any] = [] if tail is None else tail
    for node_id in reversed(list(ids)):
        children = [{"id": node_id, "children": children}]
    return children


def depth_of(tree: list[Any]) -> int:
    deepest, level = 0, [(tree, 1)]
    while level:
        nodes, d = level.pop()
        for item in nodes:
            deepest = max(deepest, d)
            level.append((item["children"], d + 1))
    return deepest


def names(start: int, stop: int) -> list[str]:
    return [f"n{i}" for i in range(start, stop)]


@pytest.fixture(scope="module")
def deep() -> dict[str, Any]:
    """A tree DEPTH levels deep, built the way a log builds it: a chain of treePush events."""
    state: dict[str, Any] = {"lib": {"tree": [], "items": {}}}
    parent = "_root"
    for node_id in names(0, DEPTH):
        state = apply_action(state, "treePush", {"target": "lib", "value": {"id": node_id},
                                                 "options": {"parent": parent}})
        parent = node_id
    return state


def deep_run(state: dict[str, Any], action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """`run` for deep states: the inputs are compared by token streams."""
    before, payload_before = tokens(state), tokens(payload)
    result = apply_action(state, action, payload)
    assert tokens(state) == before and tokens(payload) == payload_before
    return result


def test_a_chain_of_tree_push_events_builds_a_deep_tree(deep: dict[str, Any]) -> None:
    assert depth_of(deep["lib"]["tree"]) == DEPTH
    expected = {"lib": {"tree": chain(names(0, DEPTH)),
                        "items": {node_id: {} for node_id in names(0, DEPTH)}}}
    assert tokens(deep) == tokens(expected)


def test_deep_tree_push_below_the_deepest_node(deep: dict[str, Any]) -> None:
    result = deep_run(deep, "treePush", {"target": "lib", "value": {"id": "new", "x": 1},
                                         "options": {"parent": f"n{DEPTH - 1}"}})
    assert tokens(result["lib"]["tree"]) == tokens(chain([*names(0, DEPTH), "new"]))
    assert result["lib"]["items"]["new"] == {"x": 1}


def test_deep_tree_update_shares_the_tree(deep: dict[str, Any]) -> None:
    result = deep_run(deep, "treeUpdate", {"target": "lib", "value": {"w": 1},
                                           "options": {"id": f"n{DEPTH - 1}"}})
    assert result["lib"]["items"][f"n{DEPTH - 1}"] == {"w": 1}
    assert result["lib"]["tree"] is deep["lib"]["tree"]  # copy-on-write: nothing to copy


@pytest.mark.parametrize("cut", [0, 1, DEPTH // 2, DEPTH - 1])
def test_deep_tree_delete_cascades_to_the_bottom(deep: dict[str, Any], cut: int) -> None:
    result = deep_run(deep, "treeDelete", {"target": "lib", "options": {"id": f"n{cut}"}})
    assert tokens(result) == tokens({"lib": {"tree": chain(names(0, cut)),
                                             "items": {i: {} for i in names(0, cut)}}})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, DEPTH - 1), st.integers(-1, DEPTH - 1), st.sampled_from(["first", "last"]))
def test_deep_tree_move_anywhere(deep: dict[str, Any], moved: int, parent: int,
                                 position: str) -> None:
    options = {"id": f"n{moved}", "parent": "_root" if parent < 0 else f"n{parent}",
               "position": position}
    result = deep_run(deep, "treeMove", {"target": "lib", "options": options})
    above, below = names(0, moved), chain(names(moved, DEPTH))
    if parent < 0:  # to the root level, beside what is left of the chain
        rest = chain(above)
        expected = [*below, *rest] if position == "first" else [*rest, *below]
    elif parent >= moved:  # into its own subtree, gone after removal: it leaves the tree
        expected = chain(above)
    else:  # under an ancestor, beside that ancestor's remaining child
        rest = chain(names(parent + 1, moved))
        kids = [*below, *rest] if position == "first" else [*rest, *below]
        expected = chain(names(0, parent + 1), tail=kids)
    assert tokens(result["lib"]["tree"]) == tokens(expected)
    assert result["lib"]["items"] is deep["lib"]["items"]


def test_deep_paths_and_values_set_unset_and_init() -> None:
    path = ".".join(["k"] * DEPTH)
    state = deep_run({}, "set", {"target": path, "value": 1})
    nested: Any = 1
    for _ in range(DEPTH):
        nested = {"k": nested}
    assert tokens(state) == tokens(nested)
    assert tokens(deep_run(state, "unset", {"target": path})) == tokens(
        deep_run({}, "set", {"target": ".".join(["k"] * (DEPTH - 1)), "value": {}}))
    # A payload value nested DEPTH levels is copied, not aliased, without recursion.
    result = deep_run({}, "init", {"value": nested})
    assert tokens(result) == tokens(nested) and result is not nested
    assert tokens(copy_json(nested)) == tokens(nested)


ODD_CHILDREN = st.sampled_from([None, "", "ab", {}, {"a": 1}, 5, 0, True, False, []])
ODD_NODES = st.recursive(
    st.none() | st.sampled_from([5, "a", [], True])
    | st.fixed_dictionaries({"id": ODD_IDS}, optional={"children": ODD_CHILDREN}),
    lambda inner: st.fixed_dictionaries({"id": ODD_IDS, "children": st.lists(inner, max_size=3)}),
    max_leaves=8,
)
ODD_STATES = st.fixed_dictionaries({
    "lib": st.fixed_dictionaries({"tree": st.lists(ODD_NODES, max_size=4)}, optional={
        "items": st.dictionaries(st.sampled_from(["a", "b", "5", "true", ""]),
                                 JSON | st.sampled_from(["x😀", "é"]), max_size=4)}),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ODD_STATES, st.lists(TREE_ACTIONS, min_size=1, max_size=6))
def test_odd_trees_are_applied_or_refused_never_crash_nor_mutate(
        state: dict[str, Any], actions: Any) -> None:
    for action, payload in actions:
        before, payload_before = tokens(state), tokens(payload)
        try:
            result = apply_action(state, action, payload)
        except InvalidEventError:
            result = state
        assert tokens(state) == before and tokens(payload) == payload_before
        state = result
