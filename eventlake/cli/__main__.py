"""`python -m eventlake.cli`."""

from eventlake.cli._app import main

raise SystemExit(main())
