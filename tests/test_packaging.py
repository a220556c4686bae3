"""Packaging: the repository's `flows/` folder installs as `eventlake.flows`, and no top-level
`flows` module is installed, from an editable install and from a wheel alike.

Both installs go into fresh virtual environments, built offline with the setuptools of this
environment (`--no-build-isolation`, which is why the `test` extra holds the build backend);
the fresh environments reach this one's site-packages for the dependencies only (a path entry,
whose .pth files, this project's own editable finder among them, are not run). The probes run
from an empty folder, so the repository's own `flows/` folder is not on their path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Prints where the flows and the library came from, and whether a top-level `flows` exists.
PROBE = """
import importlib.util, json
import eventlake, eventlake.flows, eventlake.flows.pipeline, eventlake.flows.serve
print(json.dumps({
    "top_level_flows": importlib.util.find_spec("flows") is not None,
    "eventlake": eventlake.__file__,
    "flows": eventlake.flows.__file__,
    "pipeline_flow": eventlake.flows.pipeline.pipeline_flow.name,
}))
"""


def _setuptools_config() -> dict:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _package_folders() -> set[str]:
    """Every package of the source tree by its installed name: the folders holding an
    `__init__.py` under eventlake/, and under flows/ as eventlake.flows."""
    found = set()
    for root, name in ((REPO / "eventlake", "eventlake"), (REPO / "flows", "eventlake.flows")):
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((name, *parts)))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    config = _setuptools_config()
    assert set(config["packages"]) == _package_folders(), (
        "[tool.setuptools] packages in pyproject.toml must list every package folder")
    assert config["package-dir"] == {"eventlake.flows": "flows"}


def _source_copy(tmp_path: Path) -> Path:
    """What a build reads, copied, so the build writes nothing into the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("eventlake", "flows"):
        shutil.copytree(REPO / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return source


def _pip(command: str, *args: str, python: Path | None = None) -> None:
    """This environment's pip, offline, into `python`'s environment when given."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    target = ["--python", str(python)] if python is not None else []
    done = subprocess.run([sys.executable, "-m", "pip", *target, command, *args, "--no-deps",
                           "--no-index", "--no-build-isolation", "--no-cache-dir", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _fresh_venv(path: Path) -> Path:
    """A new environment without pip whose dependencies come from this one."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Every site-packages folder this interpreter imports from (its own, and any a .pth of
    # its own added), in its order.
    ours = [folder for folder in sys.path if Path(folder).name in {"site-packages",
                                                                   "dist-packages"}]
    assert ours, sys.path
    (Path(purelib) / "_eventlake_test_dependencies.pth").write_text(
        "".join(f"{folder}\n" for folder in dict.fromkeys(ours)), encoding="utf-8")
    return python


def _probe(python: Path, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    done = subprocess.run([str(python), "-c", PROBE], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_wheel_installs_flows_as_eventlake_flows(tmp_path):
    source = _source_copy(tmp_path)
    wheels = tmp_path / "wheels"
    _pip("wheel", "--wheel-dir", str(wheels), str(source))
    (wheel,) = wheels.glob("eventlake-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"eventlake", next(t for t in tops if t.endswith(".dist-info"))}
    assert "eventlake/flows/pipeline.py" in names and "eventlake/flows/serve.py" in names
    assert not [name for name in names if name.startswith("flows/")]

    python = _fresh_venv(tmp_path / "venv")
    _pip("install", str(wheel), python=python)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    found = _probe(python, empty)
    installed = Path(found["flows"]).resolve()
    assert installed.parts[-3:] == ("eventlake", "flows", "__init__.py")
    assert installed.is_relative_to((tmp_path / "venv").resolve())
    assert found["pipeline_flow"] == "eventlake-pipeline"
    assert found["top_level_flows"] is False


@pytest.mark.integration
def test_editable_install_maps_the_flows_folder(tmp_path):
    source = _source_copy(tmp_path)
    python = _fresh_venv(tmp_path / "venv")
    _pip("install", "--editable", str(source), python=python)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    found = _probe(python, empty)
    # The edited files themselves are imported: flows/ as eventlake.flows.
    assert Path(found["flows"]).resolve() == (source / "flows" / "__init__.py").resolve()
    assert Path(found["eventlake"]).resolve() == (source / "eventlake" / "__init__.py").resolve()
    assert found["pipeline_flow"] == "eventlake-pipeline"
    assert found["top_level_flows"] is False
