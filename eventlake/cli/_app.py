"""The `eventlake` command line: registry, parser, error handling and shared helpers.

Each subcommand is one function registered with `@command(...)` in one of the modules listed
in `COMMAND_MODULES` (one module per group of commands); adding a subcommand means writing a
function `(args) -> exit code` and, when it takes options, a `configure(parser)`.
Nothing heavy is imported at module level (ruff bans it here): polars, deltalake, duckdb,
pyarrow and rich load inside the command that needs them, so `eventlake --help` stays fast.

Only this module turns an error into a one-line `error: ...` and an exit code: an
`EventlakeError`, an `OSError`, a raw delta-rs `DeltaError` and a Rust panic
(`PanicException`, a `BaseException`); `--debug` re-raises instead, with the full traceback.
Rust's panic reports, which native threads print straight to the process's stderr, are kept
off it unless `--debug` is given (see `_NativeStderr`).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlake.config import ENV_LAKE, ENV_STORAGE_OPTIONS, ENV_VIEWS, open_lake, resolve_lake
from eventlake.errors import EventlakeError, LakeNotFoundError

if TYPE_CHECKING:
    from eventlake.lake import Lake

__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VERIFY_FAILED",
    "Command",
    "build_parser",
    "command",
    "main",
    "run",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 3
EXIT_INTERRUPTED = 130

Runner = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]

EPILOG = f"""\
global options (--lake, --views, --storage-option, --json, --debug) go before or after the
command.

settings:
  lake   --lake PATH > ${ENV_LAKE} > [tool.eventlake] lake in pyproject.toml > data/lake
  views  --views MODULE > ${ENV_VIEWS} > [tool.eventlake] views in pyproject.toml
  storage options (s3:// lakes), key by key: --storage-option KEY=VALUE >
         ${ENV_STORAGE_OPTIONS} (JSON object) > AWS_* environment variables

exit codes:
  0    success
  1    error (bad input, missing lake, failed commit, ...): one line on stderr
  2    usage error (unknown command or option)
  3    verification failed (verify), or damage found (doctor)
  4    materialize committed, but partitions of a view are failed (see `eventlake views`)
  130  interrupted (Ctrl-C)

examples:
  eventlake init data/lake
  eventlake ingest data/samples
  eventlake events --partition acct-001 --since 100 --limit 5
  eventlake info --json
"""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, option setup and the function that runs it."""

    name: str
    run: Runner
    help: str
    description: str = ""
    configure: Configure | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, configure: Configure | None = None
            ) -> Callable[[Runner], Runner]:
    """Register `run(args) -> exit code` as subcommand `name` (in registration order); its
    docstring is the description `eventlake <name> --help` shows (default: `help`)."""

    def register(run: Runner) -> Runner:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        COMMANDS[name] = Command(name, run, help, _described(run.__doc__) or help, configure)
        return run

    return register


def _described(doc: str | None) -> str:
    """A docstring as help text: its lines as written, the common indentation removed."""
    if not doc:
        return ""
    first, _, rest = doc.strip("\n").partition("\n")
    import textwrap

    return "\n".join(filter(None, [first.strip(), textwrap.dedent(rest).strip()]))


# -- parser ----------------------------------------------------------------------------------


def _global_options(*, on_subcommand: bool) -> argparse.ArgumentParser:
    # The same options exist on the main parser and on every subcommand, so they may come
    # before or after the command. On subcommands their default is SUPPRESS: an option not
    # given after the command then leaves the value given before it untouched.
    def default(value: object) -> object:
        return argparse.SUPPRESS if on_subcommand else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options")
    group.add_argument("--lake", metavar="PATH", default=default(None),
                       help=f"lake root folder or URI (default: ${ENV_LAKE}, pyproject "
                            "[tool.eventlake] lake, or data/lake)")
    group.add_argument("--views", metavar="MODULE", default=default(None),
                       help="module (or .py file) defining your views (default: "
                            f"${ENV_VIEWS} or pyproject [tool.eventlake] views)")
    group.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                       dest="storage_option_after" if on_subcommand else "storage_option",
                       default=default(None),
                       help="option for a lake on object storage, repeatable (for example "
                            "AWS_ENDPOINT_URL=http://127.0.0.1:9000); over "
                            f"${ENV_STORAGE_OPTIONS} and the AWS_* environment variables")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable JSON output on stdout")
    group.add_argument("--debug", action="store_true", default=default(False),
                       help="on error, show the full traceback instead of one line")
    return parent


# Command groups, imported when the parser is built; their order is the order in --help.
COMMAND_MODULES = (
    "eventlake.cli.log_commands",
    "eventlake.cli.view_commands",
    "eventlake.cli.query_commands",
    "eventlake.cli.flow_commands",
    "eventlake.cli.server_commands",
    "eventlake.cli.bench_commands",
    "eventlake.cli.doctor_commands",
    "eventlake.cli.status_commands",
    "eventlake.cli.changes_commands",
    "eventlake.cli.erase_commands",
    "eventlake.cli.quarantine_commands",
)


def _load_commands() -> None:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    # The order of COMMAND_MODULES, then of registration within a module, whichever module
    # something imported first (a test, a plugin): --help always lists the same way.
    rank = {module: i for i, module in enumerate(COMMAND_MODULES)}
    ordered = sorted(COMMANDS.values(),
                     key=lambda spec: rank.get(spec.run.__module__, len(rank)))
    COMMANDS.clear()
    COMMANDS.update((spec.name, spec) for spec in ordered)


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="eventlake",
        description="eventlake: an event-sourced lakehouse on Delta Lake.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options(on_subcommand=False)],
    )
    from eventlake import __version__

    parser.add_argument("--version", action="version", version=f"eventlake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _global_options(on_subcommand=True)
    for spec in COMMANDS.values():
        child = sub.add_parser(spec.name, help=spec.help, description=spec.description,
                               parents=[common],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        if spec.configure is not None:
            spec.configure(child)
        child.set_defaults(run=spec.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see `EPILOG`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        _NATIVE_STDERR.use(filtering=not args.debug)
        with _one_line_warnings(not args.debug):
            return int(args.run(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        _report(args, "interrupted", kind="KeyboardInterrupt", code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and friends: stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_OK
    except BaseException as exc:
        if not args.debug and _unwinding_ctrl_c(exc):
            _report(args, "interrupted", kind="KeyboardInterrupt", code=EXIT_INTERRUPTED)
            return EXIT_INTERRUPTED
        if args.debug or not _reported(exc):
            raise
        _report(args, _one_line(exc), kind=type(exc).__name__, code=EXIT_ERROR)
        return EXIT_ERROR


def _unwinding_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` was raised while a Ctrl-C's KeyboardInterrupt unwound. A Ctrl-C whose
    handler raises inside `threading.Condition.wait` (a thread pool's `future.result()`)
    can leave the condition's lock released, and leaving its `with` block then raises
    `RuntimeError: cannot release un-acquired lock` in place of the interrupt."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def run() -> None:
    """The `eventlake` program (console script and `python -m eventlake`): `main`, then exit
    with its code."""
    try:
        code = main()
    except KeyboardInterrupt:  # a Ctrl-C outside main's own handling: before or after it
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        import signal

        # The user is stopping the program and it is about to exit 130. A further Ctrl-C while
        # the interpreter shuts down (threads of the native libraries take a moment) would
        # otherwise kill it by the signal, and the exit status would no longer say what landed.
        # SIG_IGN is the one disposition that outlives interpreter finalization.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def _report(args: argparse.Namespace, message: str, *, kind: str, code: int) -> None:
    """Tell stderr why the command stopped: one `error: ...` line, or with `--json` one JSON
    object (`error`, `type`, `exit_code`) so a script reading JSON never has to parse text."""
    if getattr(args, "json", False):
        from eventlake.cli.output import json_text

        print(json_text({"error": message, "type": kind, "exit_code": code}), file=sys.stderr)
    elif kind == "KeyboardInterrupt":
        print(message, file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)


def _reported(exc: BaseException) -> bool:
    """The errors the CLI shows on one line: its own, the OS's, and deltalake's (a raw
    `DeltaError` or a Rust panic that reached Python without passing the storage seam)."""
    from eventlake.store.storage_failures import is_delta_error, is_panic

    return (isinstance(exc, EventlakeError | OSError) or is_delta_error(exc)
            or is_panic(exc))


def _one_line(exc: BaseException) -> str:
    from eventlake.store.storage_failures import is_panic, one_line, panic_error
    from eventlake.store.storage_options import redact

    if is_panic(exc):
        exc = panic_error(exc)
    if isinstance(exc, OSError) and not isinstance(exc, EventlakeError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    # Whatever a storage library put in its message, a credential is never shown; its
    # colour codes and cause arrows go too.
    return redact(one_line(text))


@contextmanager
def _one_line_warnings(enabled: bool) -> Iterator[None]:
    """Show eventlake's own warnings as one `warning: ...` line (not file, line and source)."""
    if not enabled:
        yield
        return
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if category.__module__.startswith("eventlake"):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


# A Rust panic report: "thread 'name' (id) panicked at file:line:col:", then the message, then
# either a note or "stack backtrace:" with frames (RUST_BACKTRACE=1/full) and a note.
_PANIC_HEADER = re.compile(rb"^thread '.*' (?:\(\d+\) )?panicked at ")
_PANIC_FRAME = re.compile(rb"^\s+(?:\d+: |at )")


class _NativeStderr:
    """Keeps Rust panic reports off stderr, from the first command that asks until exit.

    When a write fails on a full disk, delta-rs's upload tasks panic in their own native
    threads ("Already shut down"); Rust's panic hook prints each report on file descriptor 2,
    outside Python, and some only after the error that matters has reached Python and the
    command has returned. So, once installed, descriptor 2 stays a pipe whose reader passes
    everything on except those reports (all of it while `filtering` is off, as with
    `--debug`) until the process exits. Python's `sys.stderr`, when it wrote to descriptor
    2, writes straight to the real stderr instead: it stays a terminal, and nothing of
    Python's own output waits on the reader.
    """

    def __init__(self) -> None:
        self.filtering = False
        self._saved: int | None = None
        self._reader: threading.Thread | None = None

    def use(self, *, filtering: bool) -> None:
        self.filtering = filtering
        if filtering and self._saved is None:
            self._install()

    def _install(self) -> None:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return
        read_end, write_end = os.pipe()
        try:
            direct = sys.stderr.fileno() == 2
        except (OSError, ValueError, AttributeError):
            direct = False
        os.dup2(write_end, 2)
        os.close(write_end)
        if direct:
            sys.stderr = open(saved, "w", buffering=1, closefd=False,
                              encoding=sys.stderr.encoding, errors=sys.stderr.errors)
        self._saved = saved
        self._reader = threading.Thread(target=_pass_on, args=(read_end, saved, self),
                                        daemon=True, name="eventlake-stderr")
        self._reader.start()
        atexit.register(self._close)

    def _close(self) -> None:
        """At exit: give descriptor 2 back and let the reader pass on what is left."""
        if self._saved is None or self._reader is None:
            return
        try:
            os.dup2(self._saved, 2)  # drops the pipe's last writer here
        except OSError:
            return
        # A child process still holding the pipe would keep the reader waiting: not long.
        self._reader.join(timeout=0.5)


_NATIVE_STDERR = _NativeStderr()


def _pass_on(read_end: int, out: int, switch: _NativeStderr) -> None:
    """Copy lines from `read_end` to `out`, leaving Rust panic reports out while
    `switch.filtering`."""
    # "pass": other output; "message": the line after a report's header; "after": after the
    # message, where a backtrace or a note may follow; "frames": in the backtrace.
    state = "pass"
    blank = b""  # blank lines held back: Rust starts a report with one

    def emit(data: bytes) -> None:
        try:
            os.write(out, data)
        except OSError:
            pass

    def take(line: bytes) -> None:
        nonlocal state, blank
        if not switch.filtering:
            emit(blank + line)
            state, blank = "pass", b""
            return
        bare = line.rstrip(b"\r\n")
        if _PANIC_HEADER.match(bare):
            state, blank = "message", b""
            return
        if state == "message":
            state = "after"
            return
        if state in ("after", "frames"):
            if bare == b"stack backtrace:" or (state == "frames" and _PANIC_FRAME.match(bare)):
                state = "frames"
                return
            state = "pass"
            if bare.startswith(b"note: "):
                return
        if not bare.strip():
            blank += line
            return
        emit(blank + line)
        blank = b""

    pending = b""
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                take(line + b"\n")
    if pending:
        take(pending)
    if blank:
        emit(blank)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# -- shared helpers --------------------------------------------------------------------------


def number_at_least(minimum: float, *, kind: type[int] | type[float] = int,
                    what: str = "a number") -> Callable[[str], float]:
    """An argparse `type=` that parses `kind` and refuses values below `minimum`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


def _storage_options(args: argparse.Namespace) -> dict[str, str]:
    """The `--storage-option KEY=VALUE` pairs given before and after the command."""
    from eventlake.store.storage_options import parse_pairs

    pairs = [*(getattr(args, "storage_option", None) or []),
             *(getattr(args, "storage_option_after", None) or [])]
    return parse_pairs(pairs)


def _open_lake(args: argparse.Namespace, root: str | None, *, create: bool) -> Lake:
    """`open_lake` with the command's views and storage options."""
    return open_lake(root, args.views, create=create, storage_options=_storage_options(args))


def _open_existing(args: argparse.Namespace) -> Lake:
    """Open the lake for a read command; a missing lake says how to create one."""
    root = resolve_lake(args.lake).value
    try:
        return _open_lake(args, root, create=False)
    except LakeNotFoundError:
        raise LakeNotFoundError(
            f"no lake at {_display(root)} (create one with `eventlake init {root}` or ingest "
            "files)") from None


def _display(root: str | None) -> str:
    if root is None:
        return "?"
    return root if "://" in root else os.path.abspath(root)
