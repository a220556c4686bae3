"""The one resolver behind every eventlake setting: the CLI's, the flows' and the defaults of
`Lake.open`. No heavy imports here: the CLI resolves settings before it loads anything else.

A setting is taken from the most explicit source that has it:

    explicit (a flag or an argument)  >  $EVENTLAKE_<NAME>  >  [tool.eventlake] <key>  >  default

A `Spec` names a setting's sources and how to read a raw value; `resolve(spec, explicit)`
returns the value with where it came from (`Setting.source`). An environment variable that is
blank counts as unset. The pyproject.toml read is the nearest one at or above the working
directory, and only when no stronger source has the setting; a relative path in it is
relative to that file's folder (`Origin.place`), so commands work from any subfolder. A
mapping setting (storage options) is merged key by key instead (`resolve_merged`), the
stronger source winning each key. The settings themselves are declared beside the code that
uses them (`eventlake.config`, `eventlake.store.storage_options`, `eventlake.store.log`,
`eventlake.flows.settings`); README's "Settings" lists them all.

Hand-written rather than pydantic-settings, because:
- eventlake's own install has no pydantic (only the `flows` extra brings it, with Prefect),
  and this module is on the CLI's start path: importing `pydantic_settings` alone takes
  about 270 ms, all of `eventlake.config` about 70 ms (`python -X importtime`);
- callers need to know which source won (the inbox error names it, `eventlake pipeline`
  prints `--lake` only when the lake was not the default), which pydantic-settings does not
  record;
- bad values keep eventlake's messages and error classes, naming the variable or the
  pyproject file and key, instead of a pydantic `ValidationError`;
- the rule is one loop over four sources, shorter than the adapters pydantic-settings would
  need for the relative pyproject paths and the blank-means-unset environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from eventlake.errors import ConfigError, EventlakeError

__all__ = [
    "PYPROJECT_TABLE",
    "Origin",
    "Setting",
    "Spec",
    "find_pyproject",
    "positive_int",
    "project_folder",
    "pyproject_settings",
    "resolve",
    "resolve_merged",
    "text",
]

T = TypeVar("T")
PYPROJECT_TABLE = "[tool.eventlake]"


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value and where it came from: the flag, `$VARIABLE`, the pyproject.toml
    path, or the spec's default source (`default`, or `none` for a setting without one)."""

    value: T
    source: str


@dataclass(frozen=True)
class Origin:
    """Where a raw value was found: `label` names it in messages (`$EVENTLAKE_LAKE`, or
    `<path>: [tool.eventlake] lake`), `source` in `Setting.source`; `folder` is the
    pyproject.toml's folder, against which a relative path in it is placed."""

    label: str
    source: str
    folder: Path | None = None

    def place(self, path: str) -> str:
        """`path` relative to the pyproject.toml it came from; a URI, an absolute path and a
        value from the environment are left as they are (the working directory is theirs)."""
        if self.folder is None or "://" in path or os.path.isabs(path):
            return path
        return os.fspath(self.folder / path)


@dataclass(frozen=True)
class Spec(Generic[T]):
    """One setting: its flag (the `Setting.source` of an explicit value), environment variable
    and `[tool.eventlake]` key (None: no such source), how a raw value from those two is read
    (`parse(raw, origin)`, which raises the setting's own error for a bad one), and the
    default."""

    name: str
    flag: str
    env: str | None
    key: str | None
    parse: Callable[[Any, Origin], T]
    default: Callable[[], T]
    default_source: str = "default"


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest pyproject.toml at or above `start` (default: the working directory)."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def project_folder(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of the nearest pyproject.toml at or above `start` that has a
    `[tool.eventlake]` table: the project the commands run in, wherever below it they start.
    Default paths (the lake's `data/lake`) and views modules are found from here."""
    path = find_pyproject(start)
    if path is None:
        return None
    return path.parent if "eventlake" in _read(path).get("tool", {}) else None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings from {path}: {exc}") from None


def pyproject_settings(start: str | os.PathLike[str] | None = None
                       ) -> tuple[Path | None, dict[str, Any]]:
    """The nearest pyproject.toml and its `[tool.eventlake]` table (empty when absent)."""
    path = find_pyproject(start)
    if path is None:
        return None, {}
    table = _read(path).get("tool", {}).get("eventlake", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {PYPROJECT_TABLE} must be a table")
    return path, table


def _found(spec: Spec[T], env: Mapping[str, str] | None,
           cwd: str | os.PathLike[str] | None) -> Iterator[tuple[Origin, Any]]:
    """The raw values the environment and pyproject.toml hold for `spec`, stronger first;
    pyproject.toml is read only when asked for the next one after the environment's."""
    environ = os.environ if env is None else env
    if spec.env is not None:
        raw = environ.get(spec.env, "")
        if raw.strip():
            label = f"${spec.env}"
            yield Origin(label, label), raw
    if spec.key is not None:
        path, table = pyproject_settings(cwd)
        if path is not None and spec.key in table:
            yield (Origin(f"{path}: {PYPROJECT_TABLE} {spec.key}", str(path), path.parent),
                   table[spec.key])


def resolve(spec: Spec[T], explicit: T | None = None, *, env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None) -> Setting[T]:
    """The value of `spec` from its strongest source: `explicit` (None: not given), the
    environment (`env`, default `os.environ`), the pyproject.toml at or above `cwd`, the
    default."""
    if explicit is not None:
        return Setting(explicit, spec.flag)
    for origin, raw in _found(spec, env, cwd):
        return Setting(spec.parse(raw, origin), origin.source)
    return Setting(spec.default(), spec.default_source)


def resolve_merged(spec: Spec[dict[str, str]], explicit: Mapping[str, str] | None = None, *,
                   env: Mapping[str, str] | None = None,
                   cwd: str | os.PathLike[str] | None = None) -> Setting[dict[str, str]]:
    """A mapping setting merged key by key over every source, the stronger winning each key;
    the source names every contributing one, strongest first."""
    layers: list[tuple[str, Mapping[str, str]]] = []
    if explicit:
        layers.append((spec.flag, explicit))
    layers.extend((origin.source, spec.parse(raw, origin))
                  for origin, raw in _found(spec, env, cwd))
    merged = dict(spec.default())
    for _, layer in reversed(layers):
        merged.update(layer)
    sources = [source for source, layer in layers if layer]
    return Setting(merged, ", ".join(sources) if sources else spec.default_source)


# -- readers of raw values, shared by the specs ---------------------------------------------


def text(what: str, *, path: bool = False, error: type[EventlakeError] = ConfigError
         ) -> Callable[[Any, Origin], str]:
    """A reader of a non-empty string (`what` says what it must be, in the error); a `path`
    from pyproject.toml is placed relative to its folder."""

    def parse(raw: Any, origin: Origin) -> str:
        if not isinstance(raw, str) or not raw:
            raise error(f"{origin.label} must be {what}")
        return origin.place(raw) if path else raw

    return parse


def positive_int(raw: Any, origin: Origin) -> int:
    """A whole number of at least 1: a TOML integer, or its digits in the environment."""
    value: object = raw
    if isinstance(raw, str):
        try:
            value = int(raw)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{origin.label} must be a positive integer, got {raw!r}")
    return value
