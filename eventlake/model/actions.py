"""The state actions of the insieme event repository, re-implemented for eventlake.

Why: eventlake folds the same event payloads as insieme (yuusoft-org/insieme, `src/actions.js`
at commit 7488def), so a lake and an insieme client must reach the same state from the same
events. This module follows insieme's observable behaviour, including its odd corners (arrays on
a `set` path become index-keyed objects, a node moved under a missing parent leaves the tree,
`treeUpdate` of an unknown id creates the item, `treeDelete` drops `items["5"]` for a node whose
id is the number 5, `unset` through a name every JavaScript object inherits creates an empty
object there; the JavaScript value rules this takes, truthiness, `===` and `String(id)`, are in
`eventlake.model._jsvalues`), with these deliberate differences:

* No `structuredClone` of the whole state: `apply_action` runs once per event in every fold, so
  it copies only the containers on the path it changes (copy-on-write) and shares the rest with
  its input. Neither the input state nor the payload is ever mutated, and values taken from the
  payload are deep-copied so the result never aliases the caller's payload.
* No recursion: every walk of a state, a tree or a payload value keeps its own stack, so a tree
  thousands of levels deep (a chain of `treePush` events builds one) applies like a shallow one.
  Nothing here calls Python's `==`, `copy.deepcopy` or `json` on a state: they recurse.
* Payloads that would make insieme crash with a JavaScript TypeError, or silently corrupt the
  state, raise `InvalidEventError` naming the offending field. That includes `__proto__` as
  a key of a target path or as a node id (which becomes a key of `items`): insieme assigns
  those keys, and in JavaScript that replaces an object's prototype, or pollutes
  `Object.prototype`, instead of writing a key. Inside values it is an ordinary key: insieme
  copies values with spread and `structuredClone`, which keep it.
* `init` must carry an object `value`; insieme would turn the state into `undefined`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar, cast

from eventlake.errors import InvalidEventError, UnknownActionError
from eventlake.model._jsvalues import INHERITED_NAMES, MISSING, js_key, same, truthy

__all__ = [
    "ACTION_TYPES",
    "ROOT_PARENT",
    "apply_action",
    "check_action",
    "copy_json",
    "is_state_action",
]

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
_CONTAINERS: Final = (dict, list)
_PROTO: Final = "__proto__"
_PROTO_WHY: Final = (
    "JavaScript clients such as insieme turn it into the object's prototype, not a key"
)


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
    target, a missing value, options that are not an object, a node without an id, a
    `__proto__` path key, ...), so an event that passes can still be refused later only by the
    state it meets (a tree target that does not exist yet, a path through a scalar).
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
    keys = target.split(".")
    if _PROTO in keys:
        raise _invalid(action, f"target holds the key '__proto__' ({_PROTO_WHY})", "target",
                       target, "a path without '__proto__'")
    return keys


def _options(action: str, payload: JsonDict, *, required: bool = False) -> JsonDict:
    if "options" not in payload:
        if required:
            raise _invalid(action, "payload has no options", "options", None, "an object with id")
        return {}
    options = payload["options"]
    if not isinstance(options, dict):
        raise _invalid(action, "options must be an object", "options", options, "an object")
    return options


def _node_id(action: str, holder: JsonDict, field: str, *, writes_key: bool = True) -> str:
    node_id = holder.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise _invalid(action, f"{field} must be a non-empty string", field, node_id, "a node id")
    if writes_key and node_id == _PROTO:
        raise _invalid(action, f"{field} '__proto__' is refused ({_PROTO_WHY})", field, node_id,
                       "any other node id")
    return node_id


def _object_value(action: str, payload: JsonDict) -> JsonDict:
    if "value" not in payload:
        raise _invalid(action, "payload has no value", "value", None, "an object")
    value = payload["value"]
    if not isinstance(value, dict):
        raise _invalid(action, "value must be an object", "value", value, "an object")
    return value


def copy_json(value: _T) -> _T:
    """A deep copy of a JSON value (dicts, lists and scalars), without recursion.

    `copy.deepcopy` recurses, so it fails on a state nested past Python's recursion limit
    (a tree thousands of levels deep); this keeps its own stack. The actions copy payload
    values with it, so a result never aliases the caller's payload.
    """
    # (isinstance with a tuple: measurably faster than with `dict | list` on this hot path)
    if not isinstance(value, _CONTAINERS):
        return value
    top: Any = {} if isinstance(value, dict) else []
    pending: list[tuple[Any, Any]] = [(value, top)]
    while pending:
        source, copy = pending.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                if isinstance(item, _CONTAINERS):
                    item_copy: Any = {} if isinstance(item, dict) else []
                    pending.append((item, item_copy))
                    item = item_copy
                copy[key] = item
        else:
            for item in source:
                if isinstance(item, _CONTAINERS):
                    item_copy = {} if isinstance(item, dict) else []
                    pending.append((item, item_copy))
                    item = item_copy
                copy.append(item)
    return cast(_T, top)


# --- JavaScript semantics the actions rely on -----------------------------------------------


def _spread(action: str, value: object) -> JsonDict:
    # What `{...value}` yields in JS: arrays and strings become index-keyed objects.
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return {str(i): item for i, item in enumerate(value)}
    if isinstance(value, str):
        if any(ord(char) > 0xFFFF for char in value):
            # JS indexes UTF-16 code units: it would split such a character into two halves
            # (lone surrogates), which JSON text cannot hold.
            raise _invalid(action, "spreads a string with a character beyond U+FFFF into an "
                           "object (JavaScript would split it into UTF-16 halves)", "target",
                           value, "an object")
        return {str(i): char for i, char in enumerate(value)}
    return {}


# --- init / set / unset ---------------------------------------------------------------------


def _step(action: str, keys: list[str], depth: int, child: object) -> JsonDict:
    # insieme turns a scalar on the path into an object (losing the scalar); only null or
    # missing (created empty) and arrays (index-keyed, as insieme's spec shows) are taken.
    if child is not None and not isinstance(child, dict | list):
        where = ".".join(keys[: depth + 1])
        raise _invalid(action, f"path {where!r} runs through a non-object", "target", child)
    return _spread(action, child)


def _init(_state: JsonDict, payload: JsonDict) -> JsonDict:
    return _parse_init(payload)


def _parse_init(payload: JsonDict) -> JsonDict:
    return copy_json(_object_value("init", payload))


def _parse_set(payload: JsonDict) -> tuple[list[str], Any, bool]:
    keys = _target_keys("set", payload)
    if "value" not in payload:
        raise _invalid("set", "payload has no value", "value", None, "any JSON value")
    value = payload["value"]
    replace = truthy(_options("set", payload).get("replace", False))
    if not replace and isinstance(value, list):
        raise _invalid("set", _ARRAY_WITHOUT_REPLACE, "value", value, "options.replace=true")
    return keys, copy_json(value), replace


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
        current[last] = {**existing, **value}
    else:
        current[last] = value
    return root


def _parse_unset(payload: JsonDict) -> list[str]:
    return _target_keys("unset", payload, allow_empty=True)


def _unset(state: JsonDict, payload: JsonDict) -> JsonDict:
    keys = _parse_unset(payload)
    root = dict(state)
    current = root
    for depth, key in enumerate(keys[:-1]):
        child = current.get(key, MISSING)
        if child is MISSING and key in INHERITED_NAMES:
            # insieme reads the inherited function (truthy) and spreads it: an empty object.
            child = {}
        if not truthy(child):
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
            child = current[slot] if slot < len(current) else MISSING
        else:
            child = MISSING
        if child is MISSING:
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
    if not truthy(tree):
        return []
    if not isinstance(tree, list):
        raise _invalid(action, "target.tree must be a list", "target", tree, "a list of nodes")
    return tree


def _items_of(action: str, target: JsonDict) -> JsonDict:
    items = target.get("items")
    if not truthy(items):
        return {}
    if not isinstance(items, dict):
        raise _invalid(action, "target.items must be an object", "target", items, "an object")
    return items


def _not_iterable(action: str, node: Node) -> InvalidEventError:
    # insieme's treeDelete iterates every children value it meets with for...of: an object,
    # a number or `true` there makes it throw a TypeError.
    return _invalid(action, f"node {node.get('id')!r} has children that are not a list",
                    "target", node.get("children"), "a list of nodes")


def _find(nodes: list[Any], node_id: object, *, strict: str | None = None) -> Path | None:
    """Path (indexes from the roots) of the first node whose id is `node_id`, or None.

    Depth-first, parent before children: the first match is the one insieme acts on. With
    `strict` (an action name), children that JavaScript cannot iterate raise, as they make
    insieme's treeDelete throw. This loop is what treeMove and treeDelete cost on a big tree,
    so it compares inline: for a scalar `node_id`, `==` is a cheap prefilter of `_same`.
    """
    if isinstance(node_id, dict | list):
        return None  # JS `===` compares objects by identity: a payload's never matches
    exact = type(node_id) is str
    path: Path = []
    parents: list[list[Any]] = []  # the sibling list of each node on `path`
    siblings, index, count = nodes, 0, len(nodes)
    while True:
        # One `while` for both directions: a descent costs no new loop (a deep chain is one
        # descent per level), and resuming a parent's list is `path[-1] + 1`.
        while index < count:
            node = siblings[index]
            if isinstance(node, dict):
                found = node.get("id", MISSING)
                if found == node_id and (exact or same(found, node_id)):
                    path.append(index)
                    return path
                children = node.get("children")
                if type(children) is list:
                    if children:
                        parents.append(siblings)
                        path.append(index)
                        siblings, index, count = children, 0, len(children)
                        continue
                elif strict is not None and truthy(children) and not isinstance(children, str):
                    raise _not_iterable(strict, node)
            index += 1
        if not parents:
            return None
        siblings = parents.pop()
        index = path.pop() + 1
        count = len(siblings)


def _node_at(nodes: list[Any], path: Path) -> Node:
    node: Node = nodes[path[0]]
    for index in path[1:]:
        node = node["children"][index]
    return node


def _edit_list(nodes: list[Any], path: Path, edit: Callable[[list[Any], int], None]) -> list[Any]:
    """Copy `nodes` and the nodes and children lists down `path`; `edit` changes the last list."""
    top = siblings = list(nodes)
    for index in path[:-1]:
        node = dict(siblings[index])
        siblings[index] = node
        children = list(node["children"])
        node["children"] = children
        siblings = children
    edit(siblings, path[-1])
    return top


def _remove(nodes: list[Any], path: Path) -> list[Any]:
    def drop(siblings: list[Any], index: int) -> None:
        del siblings[index]

    return _edit_list(nodes, path, drop)


def _descendant_ids(action: str, node: Node) -> list[Any]:
    """Ids of `node`'s descendants, pre-order, as insieme collects them for treeDelete.

    insieme skips (with their subtrees) children whose id is falsy, and throws on children
    it cannot iterate; strings iterate as characters, which are never nodes.
    """
    found: list[Any] = []
    pending = [_children_iter(action, node)]
    while pending:
        child = next(pending[-1], MISSING)
        if child is MISSING:
            pending.pop()
        elif isinstance(child, dict) and truthy(child.get("id")):
            found.append(child["id"])
            pending.append(_children_iter(action, child))
    return found


def _children_iter(action: str, node: Node) -> Iterator[Any]:
    children = node.get("children")
    if isinstance(children, list):
        return iter(children)
    if truthy(children) and not isinstance(children, str):
        raise _not_iterable(action, node)
    return iter(())


def _places_nothing(position: object) -> bool:
    # An object position with neither anchor (a JS array is one too) inserts nothing.
    if isinstance(position, list):
        return True
    return (isinstance(position, dict) and not truthy(position.get("after"))
            and not truthy(position.get("before")))


def _place(action: str, siblings: list[Any], node: Node, position: object) -> None:
    if position == "last":
        siblings.append(node)
    elif not isinstance(position, dict):
        # "first", a missing/null position and any other non-object: insert at the start.
        if not isinstance(position, list):
            siblings.insert(0, node)
    elif truthy(after := position.get("after")):
        index = _index_of(action, siblings, after)
        siblings.insert(len(siblings) if index is None else index + 1, node)
    elif truthy(before := position.get("before")):
        index = _index_of(action, siblings, before)
        siblings.insert(0 if index is None else index, node)


def _index_of(action: str, siblings: list[Any], node_id: object) -> int | None:
    exact = type(node_id) is str
    objects = isinstance(node_id, dict | list)  # never `===` a sibling's id (see `_find`)
    for index, sibling in enumerate(siblings):
        if isinstance(sibling, dict):
            found = sibling.get("id", MISSING)
            if not objects and found == node_id and (exact or same(found, node_id)):
                return index
        elif sibling is None:
            # insieme's findIndex reads `n.id` of every sibling before the anchor: a TypeError.
            raise _invalid(action, "a sibling before the anchor is null", "options.position",
                           node_id, "siblings that are nodes")
    return None


def _insert(action: str, tree: list[Any], node: Node, options: JsonDict) -> list[Any]:
    parent = options.get("parent", ROOT_PARENT)
    position = options.get("position", "first")
    if same(parent, ROOT_PARENT):
        roots = list(tree)
        _place(action, roots, node, position)
        return roots
    path = _find(tree, parent)
    if path is None:
        return tree  # insieme drops the node from the tree when the parent is unknown
    children = _node_at(tree, path).get("children")
    if truthy(children) and not isinstance(children, list):
        if _places_nothing(position):
            return tree  # insieme calls no array method, so nothing fails and nothing moves
        raise _invalid(action, "parent's children is not a list", "options.parent", parent)

    def add_child(siblings: list[Any], index: int) -> None:
        host = dict(siblings[index])
        host["children"] = kids = list(children) if isinstance(children, list) else []
        _place(action, kids, node, position)
        siblings[index] = host

    return _edit_list(tree, path, add_child)


def _parse_tree_push(payload: JsonDict) -> tuple[JsonDict, str, JsonDict, str]:
    value = _object_value("treePush", payload)
    node_id = _node_id("treePush", value, "value.id")
    options = _options("treePush", payload)
    _target_keys("treePush", payload)
    item = copy_json({key: item for key, item in value.items() if key != "id"})
    return item, node_id, options, payload["target"]


def _tree_push(state: JsonDict, payload: JsonDict) -> JsonDict:
    item, node_id, options, target = _parse_tree_push(payload)

    def edit(target: JsonDict) -> JsonDict:
        tree = _tree_of("treePush", target)
        items = dict(_items_of("treePush", target))
        items[node_id] = item
        node = {"id": node_id, "children": []}
        return {**target, "tree": _insert("treePush", tree, node, options), "items": items}

    return _with_target("treePush", state, target, edit)


def _parse_tree_delete(payload: JsonDict) -> tuple[str, str]:
    options = _options("treeDelete", payload, required=True)
    node_id = _node_id("treeDelete", options, "options.id", writes_key=False)
    _target_keys("treeDelete", payload)
    return node_id, payload["target"]


def _tree_delete(state: JsonDict, payload: JsonDict) -> JsonDict:
    node_id, target = _parse_tree_delete(payload)

    def edit(target: JsonDict) -> JsonDict:
        tree = _tree_of("treeDelete", target)
        items = dict(_items_of("treeDelete", target))
        path = _find(tree, node_id, strict="treeDelete")
        items.pop(node_id, None)
        if path is not None:
            for gone in _descendant_ids("treeDelete", _node_at(tree, path)):
                # JS object keys are strings: node id 5 removes items["5"].
                items.pop(js_key(gone), None)
            tree = _remove(tree, path)
        # Like insieme, tree and items exist afterwards even if they did not before.
        return {**target, "tree": tree, "items": items}

    return _with_target("treeDelete", state, target, edit)


def _parse_tree_update(payload: JsonDict) -> tuple[JsonDict, str, bool, str]:
    value = copy_json(_object_value("treeUpdate", payload))
    options = _options("treeUpdate", payload, required=True)
    node_id = _node_id("treeUpdate", options, "options.id")
    _target_keys("treeUpdate", payload)
    return value, node_id, truthy(options.get("replace", False)), payload["target"]


def _tree_update(state: JsonDict, payload: JsonDict) -> JsonDict:
    value, node_id, replace, target = _parse_tree_update(payload)

    def edit(target: JsonDict) -> JsonDict:
        items = target.get("items")
        if not isinstance(items, dict):
            # insieme fails here with a TypeError (it never creates items on update).
            raise _invalid("treeUpdate", "target has no items object", "target", items)
        merged = {} if replace else _spread("treeUpdate", items.get(node_id))
        merged.update(value)
        merged.pop("id", None)
        return {**target, "items": {**items, node_id: merged}}

    return _with_target("treeUpdate", state, target, edit)


def _parse_tree_move(payload: JsonDict) -> tuple[JsonDict, str, str]:
    options = _options("treeMove", payload, required=True)
    node_id = _node_id("treeMove", options, "options.id", writes_key=False)
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
        # The node keeps its subtree (shared, never mutated); a parent inside that subtree is
        # gone after removal, so such a move drops the node from the tree, as in insieme.
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
    "init": _parse_init,
    "set": _parse_set,
    "unset": _parse_unset,
    "treePush": _parse_tree_push,
    "treeDelete": _parse_tree_delete,
    "treeUpdate": _parse_tree_update,
    "treeMove": _parse_tree_move,
}
