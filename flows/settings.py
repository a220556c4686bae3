"""Settings shared by the flows: task runner, retry policy, inbox, quiet Prefect defaults.

No Prefect import at module level: `privacy_defaults` and `quiet_prefect` must run before
Prefect reads its settings (it reads the environment once, when first imported).

Task runner (`make_task_runner`):

    threads (default)  ThreadPoolTaskRunner(max_workers=N), N = the `workers` setting
                       (`WORKERS`: --workers > $EVENTLAKE_FLOW_WORKERS > [tool.eventlake]
                       workers > min(4, CPUs)); bounded so N views refresh at a time
    dask               prefect_dask.DaskTaskRunner: a local cluster of N worker processes, or
                       the scheduler at the `dask_address` setting (`DASK_ADDRESS`)

The settings here (`INBOX`, `WORKERS`, `DASK_ADDRESS`) are resolved as every eventlake
setting is: flag or argument > environment > [tool.eventlake] in pyproject.toml > default
(`eventlake._settings`).

Dask workers run the tasks in other processes, which talk to the Prefect API themselves: with
no `PREFECT_API_URL` each worker starts its own temporary Prefect server (25-45 s each), so
use Dask with a running server (`prefect server start`) or under the test harness.

Storage options (a lake on object storage): every flow takes `storage_options`, merged over
`$EVENTLAKE_STORAGE_OPTIONS` (and, for s3:// lakes, over the AWS_* environment variables,
which Dask worker processes inherit). Prefect records a flow's parameters in its API, so the
options travel as `SecretOptions`, which Prefect stores as the placeholder `<SecretOptions>`:
`run_pipeline` wraps a plain dict itself; a direct call of a flow should pass
`SecretOptions({...})` (or rely on the environment) to keep credentials out of the API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eventlake._settings import Spec, positive_int, resolve, text
from eventlake.errors import ConfigError, EventlakeError, InboxNotFoundError

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

    from eventlake.lake import Lake

__all__ = [
    "DASK_ADDRESS",
    "DEFAULT_INBOX",
    "ENV_CONSOLE_LEVEL",
    "ENV_DASK_ADDRESS",
    "ENV_INBOX",
    "ENV_WORKERS",
    "INBOX",
    "RETRY_DELAYS",
    "WORKERS",
    "SecretOptions",
    "TaskRunnerKind",
    "default_workers",
    "flow_storage_options",
    "is_transient",
    "make_task_runner",
    "open_flow_lake",
    "privacy_defaults",
    "quiet_prefect",
    "resolve_inbox",
    "resolve_target",
    "retry_if_transient",
    "task_retries",
]

TaskRunnerKind = Literal["threads", "dask"]

DEFAULT_INBOX = "data/samples"
ENV_INBOX = "EVENTLAKE_INBOX"
ENV_WORKERS = "EVENTLAKE_FLOW_WORKERS"
ENV_DASK_ADDRESS = "EVENTLAKE_DASK_ADDRESS"
# Prefect's logging.yml, overridden key by key from the environment: the level of its console
# handler (`handlers.console.level`), which the API handler does not share.
ENV_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
# Seconds between attempts of a task that failed transiently (three retries).
RETRY_DELAYS = [0.5, 2.0, 8.0]

INBOX: Spec[str] = Spec(name="inbox", flag="--inbox", env=ENV_INBOX, key="inbox",
                        parse=text("a folder path", path=True), default=lambda: DEFAULT_INBOX)
WORKERS: Spec[int] = Spec(name="workers", flag="--workers", env=ENV_WORKERS, key="workers",
                          parse=positive_int, default=lambda: max(1, min(4, os.cpu_count() or 1)))
DASK_ADDRESS: Spec[str | None] = Spec(
    name="dask_address", flag="--dask-address", env=ENV_DASK_ADDRESS, key="dask_address",
    parse=text("a scheduler address like 'tcp://host:8786'"), default=lambda: None,
    default_source="none")

_PRIVACY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    # The temporary server takes 20-40 s to start on a small, busy machine; Prefect's default
    # wait (20 s) is too short there.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def privacy_defaults(environ: dict[str, str] | None = None) -> None:
    """Analytics and telemetry off, unless the environment already says otherwise."""
    env = os.environ if environ is None else environ
    for key, value in _PRIVACY.items():
        env.setdefault(key, value)


def quiet_prefect(*, debug: bool = False) -> None:
    """Command-line defaults: Prefect's console shows warnings only (and its temporary server
    nothing below critical, so its shutdown does not print tracebacks), while the flow's INFO
    logs still reach the Prefect API: only the console handler is raised, not the loggers'
    level. `debug` keeps Prefect's own levels. Call before Prefect is imported; explicit
    environment settings win."""
    privacy_defaults()
    if debug:
        return
    os.environ.setdefault(ENV_CONSOLE_LEVEL, "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_INTERNAL_LEVEL", "ERROR")
    for name in ("distributed", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)


def default_workers(environ: Mapping[str, str] | None = None) -> int:
    """The workers when none are given: the `workers` setting without its flag."""
    return resolve(WORKERS, env=environ).value


def make_task_runner(kind: TaskRunnerKind = "threads", *, workers: int | None = None,
                     address: str | None = None) -> TaskRunner[Any]:
    """The task runner for `kind`, with `workers` threads or Dask worker processes."""
    count = resolve(WORKERS, workers).value
    if count < 1:
        raise ConfigError(f"workers must be at least 1, got {count}")
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=count)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise ConfigError(
                "the Dask task runner needs prefect-dask: pip install 'eventlake[flows]'"
            ) from exc
        address = resolve(DASK_ADDRESS, address or None).value
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": count, "processes": True,
                                              "threads_per_worker": 1,
                                              "dashboard_address": None})
    raise ConfigError(f"unknown task runner {kind!r}; expected 'threads' or 'dask'")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call can succeed.

    eventlake errors say so themselves (`transient`: a lost commit race is, bad input is not).
    Of the rest, a Delta commit conflict and I/O errors are transient, except a missing file,
    a permission problem or a path of the wrong kind, which no retry fixes.
    """
    if isinstance(exc, EventlakeError):
        return bool(getattr(exc, "transient", False))
    if getattr(exc, "transient", False):
        return True
    from deltalake.exceptions import CommitFailedError

    if isinstance(exc, CommitFailedError):
        return True
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError
                  | NotADirectoryError):
        return False
    return isinstance(exc, OSError | TimeoutError)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only failures `is_transient` accepts."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return is_transient(data)
    try:
        state.result(raise_on_failure=True)
    except Exception as exc:
        return is_transient(exc)
    return False


def task_retries() -> dict[str, Any]:
    """The `prefect.task` options of every eventlake task: up to `RETRY_DELAYS` retries of a
    transient failure only, and no result cache (each write is idempotent by itself, and a
    cached result would skip a write that must be checked against the lake)."""
    from prefect.cache_policies import NO_CACHE  # Prefect loads only where a flow is defined

    return {"retries": len(RETRY_DELAYS), "retry_delay_seconds": RETRY_DELAYS,
            "retry_condition_fn": retry_if_transient, "cache_policy": NO_CACHE}


def resolve_inbox(explicit: str | os.PathLike[str] | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  cwd: str | os.PathLike[str] | None = None) -> Path:
    """The inbox folder: `explicit` > $EVENTLAKE_INBOX > [tool.eventlake] inbox (relative to
    its pyproject.toml) > `data/samples` (the sample inbox shipped in the repository); a
    relative path otherwise is relative to `cwd` (default: the working directory)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    setting = resolve(INBOX, None if explicit is None else os.fspath(explicit), env=environ,
                      cwd=base)
    chosen = Path(setting.value)
    if not chosen.is_absolute():
        chosen = base / chosen
    if not chosen.is_dir():
        hint = (" (the default is the sample inbox data/samples of the repository: run from "
                "the repository folder, or give --inbox)" if setting.source == "default"
                else "")
        raise InboxNotFoundError(f"inbox {chosen} ({setting.source}) is not a folder{hint}")
    return chosen.resolve()


def resolve_target(lake: str | None, views: str | None) -> tuple[str, str | None]:
    """The absolute lake root and the views module a flow works on, resolved once in the
    flow (from arguments, environment or pyproject, as the CLI does) and handed to tasks as
    plain strings: tasks may run in other processes."""
    from eventlake.config import resolve_lake, resolve_views

    root = resolve_lake(lake).value
    assert root is not None
    module = resolve_views(views).value
    if module is not None and module.endswith(".py"):
        module = str(Path(module).resolve())
    if "://" not in root:
        root = str(Path(root).resolve())
    return root, module


class SecretOptions:
    """Storage options that Prefect passes along but never records or shows.

    Prefect serializes flow parameters into its API with FastAPI's `jsonable_encoder`; this
    object has no `__dict__` and is not iterable, so it is stored as `<SecretOptions>`. It
    pickles (for Dask workers), and its repr masks secret values.
    """

    __slots__ = ("_options",)

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self._options = dict(options or {})

    def reveal(self) -> dict[str, str]:
        return dict(self._options)

    def __bool__(self) -> bool:
        return bool(self._options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretOptions) and other._options == self._options

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._options.items())))

    def __reduce__(self) -> tuple[type[SecretOptions], tuple[dict[str, str]]]:
        return SecretOptions, (self._options,)

    def __repr__(self) -> str:
        from eventlake.store.storage_options import redacted

        return f"SecretOptions({redacted(self._options)!r})"


def flow_storage_options(given: Mapping[str, str] | SecretOptions | None = None
                         ) -> SecretOptions:
    """A flow's storage options, resolved once in the flow and handed to its tasks:
    `given` over `$EVENTLAKE_STORAGE_OPTIONS`."""
    from eventlake.config import resolve_storage_options

    explicit = given.reveal() if isinstance(given, SecretOptions) else dict(given or {})
    return SecretOptions(resolve_storage_options(explicit))


def open_flow_lake(root: str, views_module: str | None = None, *, create: bool = True,
                   storage_options: SecretOptions | None = None) -> Lake:
    """Open the lake at `root` with the views of `views_module` (a task's view of it);
    without `storage_options`, those of the environment (`flow_storage_options()`)."""
    from eventlake.config import load_views
    from eventlake.lake import Lake

    options = storage_options if storage_options is not None else flow_storage_options()
    return Lake.open(root, views=load_views(views_module) if views_module else [],
                     create=create, storage_options=options.reveal())
