"""Where DuckDB's `delta` extension comes from here, and why it cannot load when it cannot.

An extension binary loads only into the DuckDB release it was built for. Online, DuckDB
downloads the right one (`INSTALL delta`); offline, the PyPI package `duckdb-extension-delta`
carries the binary for one release in its `extensions/v<release>/` folder, and nothing makes
DuckDB look there: it is loaded by path. Its releases trail DuckDB's, so the newest DuckDB on
PyPI often has no matching package, and the DuckDB shell (`duckdb-cli`, or one on PATH) is a
separate program whose release can differ from the Python module's. Both mismatches are named
here, before a shell fails on them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

__all__ = ["TESTED_RELEASE", "DeltaExtension", "DuckdbShell", "find_delta_extension",
           "find_duckdb_shell"]

# The DuckDB release whose Python module, `duckdb-cli` shell and `duckdb-extension-delta` binary
# tests/query/test_deltaext.py installs together and runs a shell on (the README names it).
TESTED_RELEASE = "1.5.5"

_PACKAGE = "duckdb_extension_delta"
_BINARY = "delta.duckdb_extension"
_RELEASE = re.compile(r"v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class DeltaExtension:
    """How this DuckDB loads `delta`: `load` is the statement (`LOAD delta` when DuckDB's own
    extension folder has it, `LOAD '<path>'` for the PyPI package's binary), or None and
    `problem` says why it cannot and what to install."""

    load: str | None
    problem: str | None
    duckdb_release: str
    path: str | None = None

    @property
    def available(self) -> bool:
        return self.load is not None


@dataclass(frozen=True)
class DuckdbShell:
    """A DuckDB shell program found beside this Python or on PATH, and its release."""

    path: str
    release: str | None


def _loads(statement: str) -> str | None:
    """None when `statement` loads the extension into a fresh DuckDB, else DuckDB's reason."""
    con = duckdb.connect()
    try:
        # Never download: offline that hangs on the network, and online it would hide which
        # binary the shell will need.
        con.execute("SET autoinstall_known_extensions = false")
        con.execute(statement)
        return None
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    finally:
        con.close()


def _packaged_releases() -> dict[str, Path]:
    """The DuckDB releases the installed `duckdb-extension-delta` carries a binary for."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return {}
    found: dict[str, Path] = {}
    for location in spec.submodule_search_locations:
        for binary in Path(location, "extensions").glob(f"v*/{_BINARY}"):
            match = _RELEASE.fullmatch(binary.parent.name)
            if match:
                found[match.group(1)] = binary
    return found


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@functools.cache
def find_delta_extension() -> DeltaExtension:
    """Find a `delta` extension this process's DuckDB loads without a download (cached: the
    installed packages do not change while a command runs)."""
    release = duckdb.__version__
    if _loads("LOAD delta") is None:
        return DeltaExtension("LOAD delta", None, release)
    packaged = _packaged_releases()
    binary = packaged.get(release)
    if binary is not None:
        statement = f"LOAD {_quote(binary)}"
        refused = _loads(statement)
        if refused is None:
            return DeltaExtension(statement, None, release, str(binary))
        return DeltaExtension(None, f"DuckDB {release} refuses {binary}: {refused}", release)
    if packaged:
        carried = ", ".join(sorted(packaged))
        problem = (f"the installed duckdb-extension-delta carries the extension for DuckDB "
                   f"{carried}, but this DuckDB is {release} and loads only its own release's "
                   f"binary: install a matching pair, for example pip install "
                   f"'duckdb=={max(packaged)}' 'duckdb-extension-delta=={max(packaged)}'")
    else:
        problem = (f"DuckDB {release} has no delta extension here: online, run INSTALL delta "
                   f"in DuckDB; offline, pip install duckdb-extension-delta at DuckDB's "
                   f"release ({release}) or pin both, for example pip install "
                   f"'duckdb=={TESTED_RELEASE}' 'duckdb-extension-delta=={TESTED_RELEASE}'")
    return DeltaExtension(None, problem, release)


def find_duckdb_shell() -> DuckdbShell | None:
    """The `duckdb` program a user of this environment would run: the one installed beside
    this Python (`duckdb-cli` in a virtual environment), else the first on PATH."""
    beside = Path(sys.executable).parent / ("duckdb.exe" if os.name == "nt" else "duckdb")
    path = str(beside) if beside.is_file() else shutil.which("duckdb")
    if path is None:
        return None
    try:
        printed = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
    except OSError:
        return DuckdbShell(path, None)
    match = _RELEASE.search(printed)
    return DuckdbShell(path, match.group(1) if match else None)
