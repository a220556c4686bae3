"""The DuckDB shell with the `delta` extension, offline: the README's pinned combination runs a
live shell over a lake, and a combination that cannot load is refused by name before a shell
would fail on it.

These install real packages from the package index (the README's route), so they are
integration tests: a virtual environment that sees this one's packages but has its own
`duckdb`, `duckdb-cli` and `duckdb-extension-delta` at `TESTED_RELEASE`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import duckdb
import pytest

from eventlake.query.deltaext import TESTED_RELEASE, find_delta_extension
from tests.samples import SAMPLE_FILES

pytestmark = [pytest.mark.integration, pytest.mark.one_layout]


def _run(*argv: str | os.PathLike[str], env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          env=env, check=False)


def _pip(python: Path | str, *argv: str) -> None:
    done = _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *argv)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> Path:
    """A virtual environment with the tested DuckDB trio over this environment's packages."""
    home = tmp_path_factory.mktemp("pinned") / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    own = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # Processed after the venv's own folder, so its duckdb shadows this environment's.
    parent = sysconfig.get_paths()["purelib"]
    Path(own.stdout.strip(), "zz_eventlake_parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")
    _pip(python, f"duckdb=={TESTED_RELEASE}", f"duckdb-cli=={TESTED_RELEASE}",
         f"duckdb-extension-delta=={TESTED_RELEASE}")
    return home


def _eventlake(python: Path | str, *argv: str | os.PathLike[str],
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(python, "-m", "eventlake", *argv, env=env)


def _shell_count(shell: Path, script: Path, table: str) -> int:
    done = _run(shell, "-init", script, "-csv", "-noheader", "-c",
                f'select count(*) from "{table}"')
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def _lake_count(python: Path, lake: Path) -> int:
    done = _eventlake(python, "sql", "select count(*) as n from events", "--lake", lake,
                      "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["n"])  # one JSON Lines record


def test_the_pinned_release_runs_a_live_shell(pinned, tmp_path):
    python, shell = pinned / "bin" / "python", pinned / "bin" / "duckdb"
    version = _run(python, "-c", "import duckdb; print(duckdb.__version__)")
    assert version.stdout.strip() == TESTED_RELEASE
    lake = tmp_path / "lake"
    assert _eventlake(python, "ingest", *SAMPLE_FILES[:2], "--lake", lake).returncode == 0
    assert _eventlake(python, "materialize", "--lake", lake).returncode == 0
    made = _eventlake(python, "duckdb", "--lake", lake, "--delta-extension", "--json")
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["delta_extension"] is True
    assert report["warning"] is None  # the shell beside this Python is the same release
    script = Path(report["output"])
    assert script.read_text().count("delta.duckdb_extension") == 1
    before = _lake_count(python, lake)
    assert _shell_count(shell, script, "events") == before > 0
    assert _shell_count(shell, script, "document") > 0
    # delta_scan reads the log's newest version: later ingests show without regenerating.
    assert _eventlake(python, "ingest", *SAMPLE_FILES[2:], "--lake", lake).returncode == 0
    after = _lake_count(python, lake)
    assert _shell_count(shell, script, "events") == after > before

    # Without a shell of its release anywhere, the script is still written, with a warning.
    hidden = shell.rename(shell.with_name("duckdb-hidden"))
    try:
        env = {**os.environ, "PATH": str(tmp_path)}  # a PATH with no duckdb on it
        warned = _eventlake(python, "duckdb", "--lake", lake, env=env)
    finally:
        hidden.rename(shell)
    assert warned.returncode == 0, warned.stderr
    assert f"no duckdb shell found beside this Python or on PATH; pip install " \
           f"'duckdb-cli=={TESTED_RELEASE}'" in warned.stderr


def test_an_extension_for_another_release_is_refused_by_name(tmp_path, views_free_lake):
    if duckdb.__version__ == TESTED_RELEASE:
        pytest.skip("this environment's DuckDB is the extension's own release")
    target = tmp_path / "extension"
    _pip(sys.executable, "--no-deps", "--target", str(target),
         f"duckdb-extension-delta=={TESTED_RELEASE}")
    env = {**os.environ, "PYTHONPATH": str(target)}
    refused = _eventlake(sys.executable, "duckdb", "--lake", views_free_lake,
                         "--delta-extension", env=env)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: --delta-extension: the installed duckdb-extension-delta carries the extension "
        f"for DuckDB {TESTED_RELEASE}, but this DuckDB is {duckdb.__version__} and loads only "
        f"its own release's binary: install a matching pair, for example pip install "
        f"'duckdb=={TESTED_RELEASE}' 'duckdb-extension-delta=={TESTED_RELEASE}'"]
    assert not (Path(views_free_lake) / "duckdb-init.sql").exists()
    # Without the flag the script falls back to the snapshot's file lists and says so.
    fallback = _eventlake(sys.executable, "duckdb", "--lake", views_free_lake, "--json", env=env)
    assert fallback.returncode == 0, fallback.stderr
    assert json.loads(fallback.stdout)["delta_extension"] is False


def test_asking_for_a_missing_extension_fails_before_writing(views_free_lake):
    done = _eventlake(sys.executable, "duckdb", "--lake", views_free_lake, "--delta-extension")
    if find_delta_extension().available:
        # DuckDB's own extension folder has it (an online `INSTALL delta` on this machine).
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --delta-extension: DuckDB {duckdb.__version__} has "
                                  f"no delta extension here"), done.stderr
    assert not (Path(views_free_lake) / "duckdb-init.sql").exists()


@pytest.fixture
def views_free_lake(tmp_path) -> str:
    lake = tmp_path / "plain"
    done = _eventlake(sys.executable, "ingest", SAMPLE_FILES[0], "--lake", lake)
    assert done.returncode == 0, done.stderr
    return str(lake)
