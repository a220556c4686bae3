"""One error root: every exception eventlake defines lives in eventlake/errors.py, derives from
`EventlakeError` (the one warning from `UserWarning`) and is exported from `eventlake`; user
mistakes raise eventlake errors that still are the builtin callers used to catch."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path

import pytest

import eventlake
import eventlake.flows as flows
from eventlake import errors
from eventlake.errors import (
    ConfigError,
    EventlakeError,
    InboxNotFoundError,
    InvalidArgumentError,
    ViewDefinitionError,
)

REPO = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names = []
    for package in (eventlake, flows):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name.rsplit(".", 1)[-1] != "__main__":  # running it is its import
                names.append(info.name)
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    # The CLI registers its commands in the order their modules are first imported: load them
    # its own way first, so the walk's alphabetical imports do not reorder `--help`.
    from eventlake.cli import build_parser

    build_parser()
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == name):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_is_defined_in_errors():
    classes = _exception_classes()
    assert len(classes) > 20, sorted(classes)  # the walk found the errors module's classes
    elsewhere = sorted(name for name, cls in classes.items()
                       if cls.__module__ != "eventlake.errors")
    assert not elsewhere, f"define these in eventlake/errors.py: {elsewhere}"


def test_every_error_derives_from_the_root_and_is_exported():
    defined = {cls.__name__: cls for cls in _exception_classes().values()}
    assert set(errors.__all__) == set(defined)
    for name, cls in defined.items():
        if issubclass(cls, Warning):
            assert name == "StorageWarning"
        else:
            assert issubclass(cls, EventlakeError), name
        assert name in eventlake.__all__ and getattr(eventlake, name) is cls, name


def _raises_of_the_root(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == "EventlakeError":
                lines.append(node.lineno)
    return lines


def test_no_code_raises_the_bare_root():
    # The root says nothing about what failed: a raise names a subclass that does.
    found = {str(path.relative_to(REPO)): lines
             for folder in ("eventlake", "flows") for path in sorted((REPO / folder).rglob("*.py"))
             if (lines := _raises_of_the_root(path))}
    assert not found, found


@pytest.mark.parametrize("module, name", [
    ("eventlake.store.log", "StaleLogError"),
    ("eventlake.engine.materialize", "MaterializeError"),
    ("eventlake.store.storage_options", "StorageOptionError"),
    ("eventlake.store.storage", "StorageWarning"),
])
def test_the_old_import_locations_still_work(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_bad_arguments_are_eventlake_errors_that_are_value_errors(tmp_path):
    from eventlake.bench import run_bench
    from eventlake.ops.maintenance import vacuum
    from eventlake.query.sql import quote_identifier, quote_literal

    lake = eventlake.Lake.open(tmp_path / "lake")
    cases = [
        (lambda: eventlake.Repository(lake, checkpoint_interval=0), "checkpoint_interval", 0),
        (lambda: vacuum(lake, retention_hours=-1), "retention_hours", -1),
        (lambda: quote_identifier("a\x00b"), "an identifier", "a\x00b"),
        (lambda: quote_literal("a\x00b"), "a literal", "a\x00b"),
        (lambda: run_bench("small", only=["no-such-step"]), "a bench step", "no-such-step"),
        (lambda: run_bench("huge"), "the bench scale", "huge"),
    ]
    for call, argument, value in cases:
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        error = caught.value
        assert isinstance(error, ValueError)
        assert (error.argument, error.value) == (argument, value)
        assert str(error).startswith(f"{argument} must be {error.expected}, got {value!r}")


def test_config_problems_are_config_errors_not_view_errors(tmp_path, monkeypatch):
    from eventlake.config import load_views, resolve_lake, resolve_views

    (tmp_path / "pyproject.toml").write_text("[tool.eventlake]\nlake = 1\nviews = ''\n")
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    for call, message in [
        (lambda: resolve_lake(cwd=tmp_path), "lake must be a non-empty string"),
        (lambda: resolve_views(cwd=tmp_path), "views must be a module path"),
        (lambda: load_views("no_such_views_module_here"), "cannot import views module"),
        (lambda: load_views(str(tmp_path / "missing.py")), "does not exist"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            call()
        assert not isinstance(caught.value, ViewDefinitionError)
        assert isinstance(caught.value, ValueError)


def test_flow_settings_raise_config_errors(tmp_path):
    from eventlake.flows.settings import default_workers, make_task_runner, resolve_inbox

    with pytest.raises(ConfigError, match="unknown task runner"):
        make_task_runner("nope", workers=1)
    with pytest.raises(ConfigError, match="positive integer"):
        default_workers({"EVENTLAKE_FLOW_WORKERS": "0"})
    with pytest.raises(InboxNotFoundError, match="not a folder"):
        resolve_inbox(tmp_path / "nowhere")


def test_a_missing_inbox_is_a_file_not_found_error(tmp_path):
    from eventlake.ingest.files import inbox_files

    with pytest.raises(InboxNotFoundError) as caught:
        inbox_files(tmp_path / "nowhere")
    assert isinstance(caught.value, FileNotFoundError)
    assert str(caught.value) == f"inbox {tmp_path / 'nowhere'} is not a folder"


def test_races_lost_to_another_writer_are_transient_and_bad_settings_are_not():
    transient = [errors.StaleLogError(expected=1, actual=2),
                 errors.RebuildSupersededError("totals"), errors.RelayoutError("moved")]
    assert all(e.transient and isinstance(e, EventlakeError) for e in transient)
    assert isinstance(transient[1], errors.CommitConflictError)
    assert "totals" in str(transient[1])
    terminal = [ConfigError("x"), InvalidArgumentError("n", -1, "positive"),
                InboxNotFoundError("inbox x is not a folder"), errors.CommandError("x")]
    assert not any(e.transient for e in terminal)


# One of each error, with the context its constructor takes.
SAMPLES = [
    errors.EventlakeError("root"),
    errors.InvalidEventError("type is empty", index=3, field="type", value="", expected="text"),
    InvalidArgumentError("retention_hours", -1, "0 or more"),
    ConfigError("bad setting"),
    errors.StorageOptionError("bad option"),
    InboxNotFoundError("inbox x is not a folder"),
    errors.ChangedFileError("a.jsonl landed with other content", file="in/a.jsonl",
                            producer="inbox"),
    errors.UnknownActionError("frob", ("set", "unset")),
    errors.UnknownViewError("nope", ("document",)),
    errors.UnknownPartitionError("p ", erased=True),
    errors.ChangesUnavailableError("version 3 of views/totals was vacuumed"),
    ViewDefinitionError("bad view"),
    errors.ViewChangedError("totals", 2, detail="types", acceptable=False),
    errors.SqlViewError("totals", "Conversion Error: Could not convert string 'x' to INT64"),
    errors.ReducerError(view="v", partition="p", seq=7, event_type="t",
                        cause=ZeroDivisionError("division by zero")),
    errors.PartitionFailedError(view="v", partition="p", seq=7, event_type="t", cause="boom"),
    errors.ColumnMismatchError(view="v", partition="p", seq=7, event_type="t", column="n",
                               value=2**64, expected="int64",
                               problem="holds an int beyond the signed 64-bit range"),
    errors.CommitConflictError("lost"),
    errors.StaleLogError(expected=4, actual=5),
    errors.MarkedError(["eventlake.replayed/inbox/a@1/3"]),
    errors.RebuildSupersededError("totals"),
    errors.UnstagedChunkError("big.jsonl", 3),
    errors.MaterializeError({"v": ViewDefinitionError("bad")}, {}),
    errors.LakeNotFoundError("no lake at x"),
    errors.CorruptLakeError("damaged", path="events/part-0.parquet"),
    errors.RestoreError("too new", version=9, current=4),
    errors.ChangesUnavailableError("changes of view 'v' at table version 3 are no longer readable"),
    errors.StorageError("read failed", path="events", endpoint="http://127.0.0.1:9000"),
    errors.StorageFullError("disk full", path="events", committed=False),
    errors.StorageUnavailableError("no answer", path="events", endpoint="http://127.0.0.1:1"),
    errors.StoragePanicError("panicked"),
    errors.ForkedProcessError(pid=2, parent=1),
    errors.RelayoutError("moved meanwhile"),
    errors.CommandError("no such file"),
]


def test_the_samples_hold_one_of_each_error():
    assert {type(e).__name__ for e in SAMPLES} == set(errors.__all__) - {"StorageWarning"}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_with_its_context(error):
    # Errors come back from process pools and Dask workers pickled.
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    # repr: an error held in the context (MaterializeError.failures) equals only itself.
    assert (str(again), again.args, repr(vars(again))) == (
        str(error), error.args, repr(vars(error)))
    assert again.transient == error.transient
    if isinstance(error, OSError):
        assert (again.errno, again.strerror, again.filename) == (
            error.errno, error.strerror, error.filename)
