"""The state actions of the insieme event repository, re-implemented for eventlake.

Why: eventlake folds the same event payloads as insieme (yuusoft-org/insieme, `src/actions.js`
at commit 7488def), so a lake and an insieme client must reach the same state from the same
events. This module follows insieme's observable behaviour, including its odd corners (arrays on
a `set` path become index-keyed objects, a node moved under a missing parent leaves the tree,
`treeUpdate` of an unknown id creates the item), with three deliberate differences:

* No `structuredClone` of the whole state: `apply_action` runs once per event in every fold, so
  it copies only the containers on the path it changes (copy-on-write) and shares the rest with
  its input. Neither the input state nor the payload is ever mutated, and values taken from the
  payload are deep-copied so the result never aliases the caller's payload.
* Payloads that would make insieme crash with a JavaScript TypeError, or silently corrupt the
  state, raise `InvalidEventError` naming the offending field.
* `init` must carry an object `value`; insieme would turn the state into `undefined`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from eventlake.errors import InvalidEventError, UnknownActionError

__all__ = ["ACTION_TYPES", "ROOT_PARENT", "apply_action", "check_action", "is_state_action"]

JsonDict = dict[str, Any]
_T = TypeVar("_T")

ACTION_TYPES: Final[tuple[str, ...]] = (
    "init",
    "set",
    "unset",
    "treePush",
    "treeDelete",
    "treeUpdate",
    "treeMove",
)
ROOT_PARENT: Final = "_root"

# insieme's wording, which its spec (and our conformance cases) match on.
_ARRAY_WITHOUT_REPLACE: Final = (
    "set with replace=false requires value to be a plain object, not an array"
)
# Stands for JavaScript's `undefined`, which a JSON value can never be.
_MISSING: Final = object()


def is_state_action(type: object) -> bool:
    """Whether `type` names one of the state actions `apply_action` understands."""
    return isinstance(type, str) and type in _HANDLERS


def apply_action(state: JsonDict, type: str, payload: JsonDict) -> JsonDict:
    """Return the state that results from applying action `type` with `payload` to `state`."""
    handler = _HANDLERS.get(type) if isinstance(type, str) else None
    if handler is None:
        raise UnknownActionError(type, ACTION_TYPES)
    if not isinstance(payload, dict):
        raise _invalid(type, "payload must be an object", "payload", payload, "a JSON object")
    if type != "init" and not isinstance(state, dict):
        raise _invalid(type, "state must be an object", "state", state, "a JSON object")
    return handler(state, payload)


def check_action(type: str, payload: object) -> None:
    """Raise `InvalidEventError` if `payload` can never apply as action `type`, whatever the state.

    These are the checks `apply_action` makes before it looks at the state (a missing or empty
    target, a missing value, options that are not an object, a node without an id, ...), so an
    event that passes can still be refused later only by the state it meets (a tree target
    that does not exist yet, a path through a scalar).
    """
    parse = _PARSERS.get(type) if isinstance(type, str) else None
    if parse is None:
        raise UnknownActionError(type, ACTION_TYPES)
    if not isinstance(payload, dict):
        raise _invalid(type, "payload must be an object", "payload", payload, "a JSON object")
    parse(payload)


# --- payload checks ------------------------------------------------------------------------


def _invalid(
    action: str, message: str, field: str, value: object = None, expected: str | None = None
) -> InvalidEventError:
    return InvalidEventError(f"{action}: {message}", field=field, value=value, expected=expected)


def _target_keys(action: str, payload: JsonDict, *, allow_empty: bool = False) -> list[str]:
    if "target" not in payload:
        raise _invalid(action, "payload has no target", "target", None, "a dot-separated path")
    target = payload["target"]
    if not isinstance(target, str) or not (target or allow_empty):
        kind = "a string" if allow_empty else "a non-empty string"
        raise _invalid(action, f"target must be {kind}", "target", target, "a dot-separated path")
    return target.split(".")


def _options(action: str, payload: JsonDict, *, required: bool = False) -> JsonDict:
    if "options" not in payload:
        if required:
            raise _invalid(action, "payload has no options", "options", None, "an object with id")
        return {}
    options = payload["options"]
    if not isinstance(options, dict):
        raise _invalid(action, "options must be an object", "options", options, "an object")
    return options


def _node_id(action: str, holder: JsonDict, field: str) -> str:
    node_id = holder.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise _invalid(action, f"{field} must be a non-empty string", field, node_id, "a node id")
    return node_id


def _object_value(action: str, payload: JsonDict) -> JsonDict:
    if "value" not in payload:
        raise _invalid(action, "payload has no value", "value", None, "an object")
    value = payload["value"]
    if not isinstance(value, dict):
        raise _invalid(action, "value must be an object", "value", value, "an object")
    return value


# --- JavaScript semantics the actions rely on -----------------------------------------------


def _truthy(value: object) -> bool:
    # insieme branches on JS truthiness: 0, "", NaN, null and false are falsy, [] and {} are not.
    if value is None or value is False or value is _MISSING:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def _same(a: object, b: object) -> bool:
    # JS `===` on JSON scalars; Python's `==` would also equate True with 1.
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return False


def _spread(value: object) -> JsonDict:
    # What `{...value}` yields in JS: arrays and strings become index-keyed objects.
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | str):
        return {str(i): item for i, item in enumerate(value)}
    return {}


def _clone(value: _T) -> _T:
    # Payload values are small; cloning them keeps the result from aliasing the payload.
    if isinstance(value, dict):
        return cast(_T, {key: _clone(item) for key, item in value.items()})
    if isinstance(value, list):
        return cast(_T, [_clone(item) for item in value])
    return value


# --- init / set / unset ---------------------------------------------------------------------


def _step(action: str, keys: list[str], depth: int, child: object) -> JsonDict:
    # insieme turns a scalar on the path into an object (losing the scalar); only null or
    # missing (created empty) and arrays (index-keyed, as insieme's spec shows) are taken.
    if child is not None and not isinstance(child, dict | list):
        where = ".".join(keys[: depth + 1])
        raise _invalid(action, f"path {where!r} runs through a non-object", "target", child)
    return _spread(child)


def _init(_state: JsonDict, payload: JsonDict) -> JsonDict:
    fresh: JsonDict = _clone(_object_value("init", payload))
    return fresh


def _parse_set(payload: JsonDict) -> tuple[list[str], Any, bool]:
    keys = _target_keys("set", payload)
    if "value" not in payload:
        raise _invalid("set", "payload has no value", "value", None, "any JSON value")
    value = payload["value"]
    replace = _truthy(_options("set", payload).get("replace", False))
    if not replace and isinstance(value, list):
        raise _invalid("set", _ARRAY_WITHOUT_REPLACE, "value", value, "options.replace=true")
    return keys, value, replace


def _set(state: JsonDict, payload: JsonDict) -> JsonDict:
    keys, value, replace = _parse_set(payload)
    root = dict(state)
    current = root
    for depth, key in enumerate(keys[:-1]):
        child = _step("set", keys, depth, current.get(key))
        current[key] = child
        current = child
    last = keys[-1]
    existing = current.get(last)
    if not replace and isinstance(existing, dict) and isinstance(value, dict):
        current[last] = {**existing, **_clone(value)}
    else:
        current[last] = _clone(value)
    return root


def _parse_unset(payload: JsonDict) -> list[str]:
    return _target_keys("unset", payload, allow_empty=True)


def _unset(state: JsonDict, payload: JsonDict) -> JsonDict:
    keys = _parse_unset(payload)
    root = dict(state)
    current = root
    for depth, key in enumerate(keys[:-1]):
        child = current.get(key, _MISSING)
        if not _truthy(child):
            return root  # nothing to remove; insieme returns the (copied) state as is
        child = _step("unset", keys, depth, child)
        current[key] = child
        current = child
    current.pop(keys[-1], None)
    return root


# --- tree actions ---------------------------------------------------------------------------

Node = JsonDict
Path = list[int]


def _with_target(
    action: str, state: JsonDict, target: str, edit: Callable[[JsonDict], JsonDict | None]
) -> JsonDict:
    """Rebuild `state` with the object at path `target` replaced by `edit(object)`.

    Only the containers between the root and the target are copied. `edit` returning None
    means the action leaves the state alone.
    """
    keys = target.split(".")
    chain: list[tuple[Any, str | int]] = []
    current: Any = state
    for depth, key in enumerate(keys):
        slot: str | int = key
        if isinstance(current, dict) and key in current:
            child = current[key]
        elif isinstance(current, list) and key.isdigit() and str(int(key)) == key:
            slot = int(key)
            child = current[slot] if slot < len(current) else _MISSING
        else:
            child = _MISSING
        if child is _MISSING:
            where = ".".join(keys[: depth + 1])
            raise _invalid(action, f"target path {where!r} does not exist", "target", target)
        chain.append((current, slot))
        current = child
    if not isinstance(current, dict):
        raise _invalid(action, "target is not an object", "target", current, "a tree object")
    replaced = edit(current)
    if replaced is None:
        return dict(state)
    result: Any = replaced
    for container, slot in reversed(chain):
        if isinstance(slot, int):
            siblings = list(container)
            siblings[slot] = result
            result = siblings
        else:
            result = {**container, slot: result}
    return cast(JsonDict, result)


def _tree_of(action: str, target: JsonDict) -> list[Any]:
    tree = target.get("tree")
    if not _truthy(tree):
        return []
    if not isinstance(tree, list):
        raise _invalid(action, "target.tree must be a list", "target", tree, "a list of nodes")
    return tree


def _items_of(action: str, target: JsonDict) -> JsonDict:
    items = target.get("items")
    if not _truthy(items):
        return {}
    if not isinstance(items, dict):
        raise _invalid(action, "target.items must be an object", "target", items, "an object")
    return items


def _find(nodes: list[Any], node_id: object) -> Path | None:
    # Depth-first, parent before children: the first match is the one insieme acts on.
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        if _same(node.get("id", _MISSING), node_id):
            return [index]
        children = node.get("children")
        if isinstance(children, list):
            below = _find(children, node_id)
            if below is not None:
                return [index, *below]
    return None


def _node_at(nodes: list[Any], path: Path) -> Node:
    node: Node = nodes[path[0]]
    for index in path[1:]:
        node = node["children"][index]
    return node


def _edit_list(nodes: list[Any], path: Path, edit: Callable[[list[Any], int], None]) -> list[Any]:
    """Copy `nodes` and the nodes down `path`, then let `edit` change the innermost copy."""
    copy = list(nodes)
    if len(path) == 1:
        edit(copy, path[0])
    else:
        node = dict(copy[path[0]])
        node["children"] = _edit_list(node["children"], path[1:], edit)
        copy[path[0]] = node
    return copy


def _remove(nodes: list[Any], path: Path) -> list[Any]:
    def drop(siblings: list[Any], index: int) -> None:
        del siblings[index]

    return _edit_list(nodes, path, drop)


def _descendant_ids(node: Node) -> list[Any]:
    found: list[Any] = []
    children = node.get("children")
    for child in children if isinstance(children, list) else ():
        # insieme skips (with their subtrees) children whose id is falsy.
        if isinstance(child, dict) and _truthy(child.get("id")):
            found.append(child["id"])
            found.extend(_descendant_ids(child))
    return found


def _place(siblings: list[Any], node: Node, position: object) -> None:
    if position == "last":
        siblings.append(node)
        return
    if not isinstance(position, dict):
        # "first", a missing/null position and any other non-object: insert at the start.
        # A JS array is an object without anchors, which inserts nothing (see below).
        if not isinstance(position, list):
            siblings.insert(0, node)
        return
    after, before = position.get("after"), position.get("before")
    if _truthy(after):
        index = _index_of(siblings, after)
        siblings.insert(len(siblings) if index is None else index + 1, node)
    elif _truthy(before):
        index = _index_of(siblings, before)
        siblings.insert(0 if index is None else index, node)
    # An object position with neither anchor inserts nothing, as in insieme.


def _index_of(siblings: list[Any], node_id: object) -> int | None:
    for index, sibling in enumerate(siblings):
        if isinstance(sibling, dict) and _same(sibling.get("id", _MISSING), node_id):
            return index
    return None


def _insert(action: str, tree: list[Any], node: Node, options: JsonDict) -> list[Any]:
    parent = options.get("parent", ROOT_PARENT)
    position = options.get("position", "first")
    if _same(parent, ROOT_PARENT):
        roots = list(tree)
        _place(roots, node, position)
        return roots
    path = _find(tree, parent)
    if path is None:
        return tree  # insieme drops the node from the tree when the parent is unknown

    def add_child(siblings: list[Any], index: int) -> None:
        host = dict(siblings[index])
        children = host.get("children")
        if not _truthy(children):
            children = []
        elif not isinstance(children, list):
            raise _invalid(action, "parent's children is not a list", "options.parent", parent)
        host["children"] = children = list(children)
        _place(children, node, position)
        siblings[index] = host

    return _edit_list(tree, path, add_child)


def _parse_tree_push(payload: JsonDict) -> tuple[JsonDict, str, JsonDict, str]:
    value = _object_value("treePush", payload)
    node_id = _node_id("treePush", value, "value.id")
    options = _options("treePush", payload)
    _target_keys("treePush", payload)
    return value, node_id, options, payload["target"]


def _tree_push(state: JsonDict, payload: JsonDict) -> JsonDict:
    value, node_id, options, target = _parse_tree_push(payload)

    def edit(target: JsonDict) -> JsonDict:
        tree = _tree_of("treePush", target)
        items = dict(_items_of("treePush", target))
        items[node_id] = {key: _clone(item) for key, item in value.items() if key != "id"}
        node = {"id": node_id, "children": []}
        return {**target, "tree": _insert("treePush", tree, node, options), "items": items}

    return _with_target("treePush", state, target, edit)


def _parse_tree_delete(payload: JsonDict) -> tuple[str, str]:
    node_id = _node_id("treeDelete", _options("treeDelete", payload, required=True), "options.id")
    _target_keys("treeDelete", payload)
    return node_id, payload["target"]


def _tree_delete(state: JsonDict, payload: JsonDict) -> JsonDict:
    node_id, target = _parse_tree_delete(payload)

    def edit(target: JsonDict) -> JsonDict:
        tree = _tree_of("treeDelete", target)
        items = dict(_items_of("treeDelete", target))
        path = _find(tree, node_id)
        doomed: list[Any] = [node_id]
        if path is not None:
            doomed.extend(_descendant_ids(_node_at(tree, path)))
            tree = _remove(tree, path)
        for gone in doomed:
            if isinstance(gone, str):
                items.pop(gone, None)
        # Like insieme, tree and items exist afterwards even if they did not before.
        return {**target, "tree": tree, "items": items}

    return _with_target("treeDelete", state, target, edit)


def _parse_tree_update(payload: JsonDict) -> tuple[JsonDict, str, bool, str]:
    value = _object_value("treeUpdate", payload)
    options = _options("treeUpdate", payload, required=True)
    node_id = _node_id("treeUpdate", options, "options.id")
    _target_keys("treeUpdate", payload)
    return value, node_id, _truthy(options.get("replace", False)), payload["target"]


def _tree_update(state: JsonDict, payload: JsonDict) -> JsonDict:
    value, node_id, replace, target = _parse_tree_update(payload)

    def edit(target: JsonDict) -> JsonDict:
        items = target.get("items")
        if not isinstance(items, dict):
            # insieme fails here with a TypeError (it never creates items on update).
            raise _invalid("treeUpdate", "target has no items object", "target", items)
        merged = {} if replace else _spread(items.get(node_id))
        merged.update(_clone(value))
        merged.pop("id", None)
        return {**target, "items": {**items, node_id: merged}}

    return _with_target("treeUpdate", state, target, edit)


def _parse_tree_move(payload: JsonDict) -> tuple[JsonDict, str, str]:
    options = _options("treeMove", payload, required=True)
    node_id = _node_id("treeMove", options, "options.id")
    _target_keys("treeMove", payload)
    return options, node_id, payload["target"]


def _tree_move(state: JsonDict, payload: JsonDict) -> JsonDict:
    options, node_id, target = _parse_tree_move(payload)

    def edit(target: JsonDict) -> JsonDict | None:
        tree = target.get("tree")
        if not isinstance(tree, list):
            return None  # no tree means no node to move: insieme returns the state as is
        path = _find(tree, node_id)
        if path is None:
            return None  # unknown node: insieme returns the state unchanged
        node = _node_at(tree, path)
        # The node keeps its subtree; a parent inside that subtree is gone after removal,
        # so such a move drops the node from the tree, exactly as in insieme.
        moved = _insert("treeMove", _remove(tree, path), node, options)
        return {**target, "tree": moved}

    return _with_target("treeMove", state, target, edit)


_HANDLERS: Final[dict[str, Callable[[JsonDict, JsonDict], JsonDict]]] = {
    "init": _init,
    "set": _set,
    "unset": _unset,
    "treePush": _tree_push,
    "treeDelete": _tree_delete,
    "treeUpdate": _tree_update,
    "treeMove": _tree_move,
}

# The state-independent half of each action: what `check_action` runs at append time.
_PARSERS: Final[dict[str, Callable[[JsonDict], object]]] = {
    "init": lambda payload: _object_value("init", payload),
    "set": _parse_set,
    "unset": _parse_unset,
    "treePush": _parse_tree_push,
    "treeDelete": _parse_tree_delete,
    "treeUpdate": _parse_tree_update,
    "treeMove": _parse_tree_move,
}
