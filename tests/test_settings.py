"""Every setting resolves flag > environment > [tool.eventlake] in pyproject.toml > default
(`eventlake._settings`), read through the entry point its callers use; a bad value names its
source; a setting without a pyproject key ignores one written there."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import eventlake as el
from eventlake._settings import Origin, Spec, resolve, resolve_merged
from eventlake.cli import EXIT_OK, main
from eventlake.config import open_lake, resolve_lake, resolve_storage_options, resolve_views
from eventlake.errors import ConfigError, EventlakeError, InvalidEventError
from eventlake.flows.settings import make_task_runner, resolve_inbox
from eventlake.model.layout import Layout
from eventlake.store.storage_options import StorageOptionError

LEVELS = ("flag", "env", "pyproject")
ENV_NAMES = ("EVENTLAKE_LAKE", "EVENTLAKE_VIEWS", "EVENTLAKE_INBOX", "EVENTLAKE_FLOW_WORKERS",
             "EVENTLAKE_DASK_ADDRESS", "EVENTLAKE_LAYOUT", "EVENTLAKE_STORAGE_OPTIONS")


@dataclass(frozen=True)
class Project:
    """A project folder with a pyproject.toml, worked in from a subfolder of it."""

    root: Path
    cwd: Path

    def write(self, table: str = "") -> None:
        (self.root / "pyproject.toml").write_text(f"[tool.eventlake]\n{table}\n",
                                                  encoding="utf-8")


@dataclass(frozen=True)
class Row:
    """One setting: its variable, its pyproject key (None: the setting has no such source,
    and a value written under `written_key` must change nothing), a value per source as
    given, what each resolves to, and `read(given)`, the setting read through its real entry
    point (`given`: whether the flag or argument is passed)."""

    name: str
    env: str
    key: str | None
    env_value: str
    pyproject_value: str  # TOML
    read: Callable[[bool], Any]
    expect: dict[str, Any]

    @property
    def written_key(self) -> str:
        return self.key or self.name


def _rows(project: Project) -> list[Row]:
    cwd, root = project.cwd, project.root
    for folder in (cwd / "flag-inbox", cwd / "env-inbox", root / "py-inbox",
                   cwd / "data" / "samples"):
        folder.mkdir(parents=True, exist_ok=True)
    lakes = itertools.count()

    def new_lake_layout(given: bool) -> Layout:
        lake = el.Lake.open(root / f"lake-{next(lakes)}", layout="buckets" if given else None,
                            buckets=4 if given else None)
        return lake.layout

    return [
        Row("lake", "EVENTLAKE_LAKE", "lake", "env-lake", '"py-lake"',
            lambda given: resolve_lake("flag-lake" if given else None).value,
            {"flag": "flag-lake", "env": "env-lake", "pyproject": str(root / "py-lake"),
             "default": str(root / "data" / "lake")}),
        Row("views", "EVENTLAKE_VIEWS", "views", "env.views", '"py.views"',
            lambda given: resolve_views("flag.views" if given else None).value,
            {"flag": "flag.views", "env": "env.views", "pyproject": "py.views",
             "default": None}),
        # From the flows: the inbox (a relative path in pyproject.toml is relative to it)...
        Row("inbox", "EVENTLAKE_INBOX", "inbox", "env-inbox", '"py-inbox"',
            lambda given: resolve_inbox("flag-inbox" if given else None),
            {"flag": cwd / "flag-inbox", "env": cwd / "env-inbox",
             "pyproject": root / "py-inbox", "default": cwd / "data" / "samples"}),
        # ... the workers of the task runner ...
        Row("workers", "EVENTLAKE_FLOW_WORKERS", "workers", "5", "7",
            lambda given: make_task_runner("threads", workers=3 if given else None)
            ._max_workers,
            {"flag": 3, "env": 5, "pyproject": 7, "default": max(1, min(4, os.cpu_count() or 1))}),
        # ... and the Dask scheduler.
        Row("dask_address", "EVENTLAKE_DASK_ADDRESS", "dask_address", "tcp://env:2",
            '"tcp://py:3"',
            lambda given: make_task_runner("dask", workers=1,
                                           address="tcp://flag:1" if given else None).address,
            {"flag": "tcp://flag:1", "env": "tcp://env:2", "pyproject": "tcp://py:3",
             "default": None}),
        Row("layout", "EVENTLAKE_LAYOUT", None, "buckets:6", '"buckets:9"', new_lake_layout,
            {"flag": Layout("buckets", 4), "env": Layout("buckets", 6),
             "default": Layout("partition_id")}),
        Row("storage_options", "EVENTLAKE_STORAGE_OPTIONS", None, '{"aws_region": "env"}',
            '{ aws_region = "py" }',
            lambda given: resolve_storage_options({"aws_region": "flag"} if given else None),
            {"flag": {"aws_region": "flag"}, "env": {"aws_region": "env"}, "default": {}}),
    ]


ROW_NAMES = ("lake", "views", "inbox", "workers", "dask_address", "layout", "storage_options")
COMBINATIONS = [levels for n in range(len(LEVELS) + 1)
                for levels in itertools.combinations(LEVELS, n)]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    cwd = root / "src" / "deep"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    made = Project(root, cwd)
    made.write()
    return made


def _row(project: Project, name: str) -> Row:
    (row,) = [r for r in _rows(project) if r.name == name]
    return row


@pytest.mark.parametrize("levels", COMBINATIONS, ids=lambda levels: "+".join(levels) or "none")
@pytest.mark.parametrize("name", ROW_NAMES)
def test_the_strongest_given_source_wins(project, monkeypatch, name, levels):
    row = _row(project, name)
    if "env" in levels:
        monkeypatch.setenv(row.env, row.env_value)
    if "pyproject" in levels:
        project.write(f"{row.written_key} = {row.pyproject_value}")
    readable = [level for level in LEVELS if level in levels
                and (level != "pyproject" or row.key is not None)]
    want = row.expect[readable[0] if readable else "default"]
    assert row.read("flag" in levels) == want


@pytest.mark.parametrize("name", ROW_NAMES)
def test_a_blank_variable_counts_as_unset(project, monkeypatch, name):
    row = _row(project, name)
    monkeypatch.setenv(row.env, "  ")
    assert row.read(False) == row.expect["default"]


def test_storage_options_merge_key_by_key(project, monkeypatch):
    monkeypatch.setenv("EVENTLAKE_STORAGE_OPTIONS", '{"aws_region": "env", "endpoint": "e"}')
    assert resolve_storage_options({"aws_region": "flag", "token": "t"}) == {
        "aws_region": "flag", "endpoint": "e", "token": "t"}


def _pyproject_label(project: Project, key: str) -> str:
    return f"{project.root / 'pyproject.toml'}: [tool.eventlake] {key}"


# (setting, where the bad value is, the value, the error, the message's end after the label)
BAD_VALUES = [
    ("lake", "pyproject", '""', ConfigError, "must be a non-empty string"),
    ("views", "pyproject", "3", ConfigError,
     "must be a module path like 'pkg.views'"),
    ("inbox", "pyproject", "5", EventlakeError, "must be a folder path"),
    ("workers", "env", "zero", EventlakeError, "must be a positive integer, got 'zero'"),
    ("workers", "env", "0", EventlakeError, "must be a positive integer, got '0'"),
    ("workers", "pyproject", "0", EventlakeError, "must be a positive integer, got 0"),
    ("workers", "pyproject", "true", EventlakeError, "must be a positive integer, got True"),
    ("workers", "pyproject", '"four"', EventlakeError,
     "must be a positive integer, got 'four'"),
    ("dask_address", "pyproject", "[1]", EventlakeError,
     "must be a scheduler address like 'tcp://host:8786'"),
    ("storage_options", "env", "[1]", StorageOptionError,
     "must be a JSON object of option names to values, not a list"),
    ("storage_options", "env", '{"a": ', StorageOptionError, "is not valid JSON"),
]


@pytest.mark.parametrize(("name", "level", "raw", "error", "message"), BAD_VALUES)
def test_a_bad_value_names_its_source(project, monkeypatch, name, level, raw, error, message):
    row = _row(project, name)
    if level == "env":
        monkeypatch.setenv(row.env, raw)
        label = f"${row.env}"
    else:
        project.write(f"{row.written_key} = {raw}")
        label = _pyproject_label(project, name)
    with pytest.raises(error, match=re.escape(f"{label} {message}")):
        row.read(False)


def test_a_bad_layout_variable_is_refused(project, monkeypatch):
    monkeypatch.setenv("EVENTLAKE_LAYOUT", "buckets:x")
    with pytest.raises(InvalidEventError, match="bad bucket count"):
        _row(project, "layout").read(False)


def test_the_settings_table_must_be_a_table(project):
    (project.root / "pyproject.toml").write_text('[tool]\neventlake = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape("[tool.eventlake] must be a table")):
        resolve_lake()


def test_the_pyproject_file_is_read_only_when_needed(project, monkeypatch):
    """A stronger source answers without reading pyproject.toml: a broken one is no error."""
    (project.root / "pyproject.toml").write_text("[tool.eventlake\n", encoding="utf-8")
    monkeypatch.setenv("EVENTLAKE_LAKE", "env-lake")
    assert resolve_lake().value == "env-lake"
    assert resolve_lake("flag").value == "flag"
    monkeypatch.delenv("EVENTLAKE_LAKE")
    with pytest.raises(ConfigError, match="cannot read settings from"):
        resolve_lake()


def test_sources_are_named(project, monkeypatch):
    assert resolve_lake().source == "default" and resolve_views().source == "none"
    project.write('lake = "x"')
    assert resolve_lake().source == str(project.root / "pyproject.toml")
    monkeypatch.setenv("EVENTLAKE_LAKE", "y")
    assert resolve_lake().source == "$EVENTLAKE_LAKE"
    assert resolve_lake("z").source == "--lake"


def test_a_uri_or_absolute_path_in_pyproject_is_kept(project, tmp_path):
    project.write('lake = "s3://bucket/lake"')
    assert resolve_lake().value == "s3://bucket/lake"
    project.write(f'lake = "{tmp_path / "abs"}"')
    assert resolve_lake().value == str(tmp_path / "abs")


def test_the_resolver_on_a_spec_of_its_own(project, monkeypatch):
    """`resolve` and `resolve_merged` on a made-up spec: any setting gets the same rule."""
    spec: Spec[str] = Spec(name="colour", flag="--colour", env="TEST_COLOUR", key="colour",
                           parse=lambda raw, origin: f"{raw}@{origin.source}",
                           default=lambda: "grey")
    assert resolve(spec).value == "grey"
    project.write('colour = "red"')
    assert resolve(spec).value == f"red@{project.root / 'pyproject.toml'}"
    monkeypatch.setenv("TEST_COLOUR", "blue")
    assert resolve(spec).value == "blue@$TEST_COLOUR"
    assert resolve(spec, "green").value == "green"
    assert resolve(spec, env={}).value.startswith("red@")

    def table(raw: Any, origin: Origin) -> dict[str, str]:
        return dict(item.split("=") for item in raw.split(",")) if isinstance(raw, str) else raw

    merged: Spec[dict[str, str]] = Spec(name="tags", flag="--tag", env="TEST_TAGS", key="tags",
                                        parse=table, default=lambda: {"a": "0", "z": "0"})
    project.write('tags = { a = "py", b = "py", c = "py" }')
    monkeypatch.setenv("TEST_TAGS", "b=env,d=env")
    got = resolve_merged(merged, {"c": "flag"})
    assert got.value == {"a": "py", "b": "env", "c": "flag", "d": "env", "z": "0"}
    assert got.source == f"--tag, $TEST_TAGS, {project.root / 'pyproject.toml'}"


# -- a project worked in from a subfolder -----------------------------------------------------

VIEWS_FILE = """
from eventlake.views import ReducerView

counts = ReducerView(name="counts", version=1, initial_state=lambda: {"n": 0},
                     reduce=lambda s, e: {"n": s["n"] + 1})
"""


def test_a_views_file_in_pyproject_is_relative_to_its_folder(project):
    (project.root / "conf").mkdir()
    (project.root / "conf" / "views.py").write_text(VIEWS_FILE, encoding="utf-8")
    project.write('views = "conf/views.py"')
    assert resolve_views().value == str(project.root / "conf" / "views.py")
    lake = open_lake(create=True)
    assert lake.root == str(project.root / "data" / "lake")
    assert sorted(lake.views) == ["counts", "document"]


def test_a_dotted_views_module_is_found_from_the_project_folder(project):
    (project.root / "projviews.py").write_text(VIEWS_FILE, encoding="utf-8")
    project.write('views = "projviews"')
    assert "counts" in open_lake(create=True).views


def test_the_commands_work_from_a_subfolder(project, capsys):
    (project.root / "conf").mkdir()
    (project.root / "conf" / "views.py").write_text(VIEWS_FILE, encoding="utf-8")
    project.write('views = "conf/views.py"')
    assert main(["init"]) == EXIT_OK
    assert main(["--json", "info"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["root"] == str(project.root / "data" / "lake")
    assert "counts" in json.dumps(info)


@pytest.mark.parametrize("level", ["env", "pyproject"])
def test_a_missing_views_file_names_the_setting_it_came_from(project, monkeypatch, level):
    if level == "env":
        monkeypatch.setenv("EVENTLAKE_VIEWS", "conf/missing.py")
        where = "$EVENTLAKE_VIEWS"
    else:
        project.write('views = "conf/missing.py"')
        where = f"[tool.eventlake] views in {project.root / 'pyproject.toml'}"
    with pytest.raises(ConfigError, match=r"missing\.py does not exist") as caught:
        open_lake(create=True)
    assert str(caught.value).endswith(f"(views setting from {where})")
