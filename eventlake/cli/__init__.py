"""The `eventlake` console script (see `eventlake.cli._app`)."""

from eventlake.cli._app import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    Command,
    build_parser,
    command,
    main,
)

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
]
