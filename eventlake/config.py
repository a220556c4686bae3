"""Settings for the CLI and flows: which lake, which user views. No heavy imports here.

Each setting comes from the most explicit source that has it (the resolver is
`eventlake._settings`; README's "Settings" lists every setting):

    lake:  --lake PATH  >  $EVENTLAKE_LAKE  >  [tool.eventlake] lake  >  data/lake
    views: --views MOD  >  $EVENTLAKE_VIEWS >  [tool.eventlake] views >  none
    storage options (lakes on object storage), merged key by key:
           --storage-option KEY=VALUE  >  $EVENTLAKE_STORAGE_OPTIONS (JSON object)
           >  AWS_* environment variables (for s3:// roots; see eventlake.storage_options)

The pyproject.toml used is the nearest one walking up from the working directory; a relative
`lake` or views file there is relative to that file's folder, and the default `data/lake` to
the folder of the nearest pyproject.toml with a `[tool.eventlake]` table, so commands work from
any subfolder. An error about a setting names where it came from.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from eventlake._settings import (
    Origin,
    Setting,
    Spec,
    find_pyproject,
    project_folder,
    pyproject_settings,
    resolve,
    resolve_merged,
    text,
)
from eventlake.errors import ConfigError, ViewDefinitionError
from eventlake.store.storage_options import ENV_STORAGE_OPTIONS, STORAGE_OPTIONS

if TYPE_CHECKING:
    from eventlake.lake import Lake
    from eventlake.model.views import View

__all__ = [
    "DEFAULT_LAKE",
    "ENV_LAKE",
    "ENV_STORAGE_OPTIONS",
    "ENV_VIEWS",
    "LAKE",
    "VIEWS",
    "Setting",
    "configured_views",
    "find_pyproject",
    "load_sql_views",
    "load_views",
    "open_lake",
    "pyproject_settings",
    "resolve_lake",
    "resolve_storage_options",
    "resolve_views",
]

DEFAULT_LAKE = "data/lake"
ENV_LAKE = "EVENTLAKE_LAKE"
ENV_VIEWS = "EVENTLAKE_VIEWS"


LAKE: Spec[str] = Spec(
    name="lake", flag="--lake", env=ENV_LAKE, key="lake",
    parse=text("a non-empty string", path=True, error=ConfigError),
    default=lambda: DEFAULT_LAKE)


def _views_text(raw: Any, origin: Origin) -> str:
    """A views module: a dotted name stays as it is (imported with the project folder on the
    path); a `.py` file or a folder of `.sql` views from pyproject.toml is placed relative to
    that file."""
    value = text("a module path like 'pkg.views', a .py file or a folder of .sql views",
                 error=ConfigError)(raw, origin)
    if (value.endswith(".py") or "/" in value or os.sep in value
            or (origin.folder is not None and (origin.folder / value).is_dir())):
        return origin.place(value)
    return value


VIEWS: Spec[str | None] = Spec(
    name="views", flag="--views", env=ENV_VIEWS, key="views", parse=_views_text,
    default=lambda: None, default_source="none")


def resolve_lake(explicit: str | os.PathLike[str] | None = None, *,
                 env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> Setting[str]:
    """Which lake root to use, and from where that choice came. The default, `data/lake`, is
    relative to the project folder (the nearest pyproject.toml with a `[tool.eventlake]`
    table), so every command and the notebook find the same lake from any subfolder; without
    such a project it is relative to the working directory."""
    setting = resolve(LAKE, None if explicit is None else os.fspath(explicit), env=env, cwd=cwd)
    if setting.source == LAKE.default_source:
        project = project_folder(cwd)
        if project is not None:
            return Setting(os.fspath(project / setting.value), setting.source)
    return setting


def resolve_views(explicit: str | None = None, *, env: Mapping[str, str] | None = None,
                  cwd: str | os.PathLike[str] | None = None) -> Setting[str | None]:
    """Which module holds the user's views (value None when no source names one)."""
    return resolve(VIEWS, explicit, env=env, cwd=cwd)


def _import(module_path: str) -> ModuleType:
    if module_path.endswith(".py"):
        file = Path(module_path)
        if not file.is_file():
            raise ConfigError(f"views file {module_path} does not exist")
        name = f"_eventlake_user_views_{file.stem}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load views from {module_path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    # The CLI runs in a project whose modules are usually not installed: its folder (and the
    # working directory, where a module may also live) go on the path.
    for folder in (project_folder(), Path.cwd()):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(module_path)


def load_sql_views(folder: str | os.PathLike[str]) -> list[View]:
    """The SQL views of a folder: each `<name>.sql` file (a `-- version: N` header, then one
    SELECT) is the view `<name>`, in name order."""
    from eventlake.model.sqlview import parse_sql_file

    files = sorted(Path(folder).glob("*.sql"))
    if not files:
        raise ViewDefinitionError(f"views folder {os.fspath(folder)!r} holds no .sql files")
    return [parse_sql_file(file.stem, file.read_text(encoding="utf-8")) for file in files]


def load_views(module_path: str) -> list[View]:
    """Import `module_path` (dotted module or a .py file) and collect its view definitions;
    a folder gives its `.sql` files' SQL views (`load_sql_views`).

    A module-level `VIEWS` sequence wins; otherwise every module-level `ReducerView`,
    `AggregateView` or `SqlView` is taken, in definition order.
    """
    from eventlake.model.views import AggregateView, ReducerView, SqlView

    if Path(module_path).is_dir():
        return load_sql_views(module_path)
    try:
        module = _import(module_path)
    except (ConfigError, ViewDefinitionError):
        raise
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"cannot import views module {module_path!r}: {exc} (is it on the path? run from "
            "the project folder or install it)") from exc
    except Exception as exc:
        raise ViewDefinitionError(
            f"views module {module_path!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    kinds = (ReducerView, AggregateView, SqlView)
    declared = getattr(module, "VIEWS", None)
    if declared is not None:
        if isinstance(declared, str | bytes) or not hasattr(declared, "__iter__"):
            raise ViewDefinitionError(f"{module_path}.VIEWS must be a list of views")
        views = list(declared)
        for item in views:
            if not isinstance(item, kinds):
                raise ViewDefinitionError(
                    f"{module_path}.VIEWS holds {item!r}, which is not a ReducerView, "
                    "AggregateView or SqlView")
    else:
        views = [value for value in vars(module).values() if isinstance(value, kinds)]
    unique: list[View] = []
    for view in views:
        if not any(view is seen for seen in unique):
            unique.append(view)
    if not unique:
        raise ViewDefinitionError(
            f"views module {module_path!r} defines no views (expected a VIEWS list or "
            "module-level ReducerView/AggregateView/SqlView objects)")
    return unique


def configured_views(setting: Setting[str | None]) -> list[View]:
    """The views of a resolved views setting (none when no source names a module); a module
    that cannot be loaded is reported with the source that named it, since a path that is
    right in pyproject.toml may be wrong in `$EVENTLAKE_VIEWS` and the other way round."""
    if setting.value is None:
        return []
    try:
        return load_views(setting.value)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (views setting from {_source_label(setting)})") from None


def _source_label(setting: Setting[Any]) -> str:
    if setting.source.endswith("pyproject.toml"):
        return f"[tool.eventlake] views in {setting.source}"
    return setting.source


def resolve_storage_options(explicit: Mapping[str, str] | None = None, *,
                            env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`$EVENTLAKE_STORAGE_OPTIONS` overlaid with `explicit` options (`--storage-option`).

    For s3:// roots, `Lake.open` then adds the AWS environment variables under these.
    """
    return resolve_merged(STORAGE_OPTIONS, explicit, env=env).value


def open_lake(lake: str | os.PathLike[str] | None = None, views: str | None = None, *,
              create: bool = True, storage_options: Mapping[str, str] | None = None) -> Lake:
    """Open the lake named by `lake` (or the settings) with the views module's views;
    `storage_options` go over those of `$EVENTLAKE_STORAGE_OPTIONS`."""
    from eventlake.lake import Lake

    root = resolve_lake(lake).value
    assert root is not None
    loaded = configured_views(resolve_views(views))
    return Lake.open(root, views=loaded, storage_options=resolve_storage_options(storage_options),
                     create=create)
