"""`python -m eventlake`: the `eventlake` command line."""

from eventlake.cli._app import run

run()
