"""The exploration notebook runs top to bottom against a lake built from the samples."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "data" / "notebooks" / "explore.ipynb"
SAMPLES = REPO / "data" / "samples"

pytestmark = pytest.mark.integration


def _sample_lake(root: Path) -> Path:
    import eventlake as el
    from eventlake.config import load_views
    from eventlake.ingest.files import FORMATS, read_file

    # The views of the repository's pyproject.toml, which the notebook loads.
    lake = el.Lake.open(root, views=load_views(str(SAMPLES / "views.py")))
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in FORMATS)
    assert files
    for number, path in enumerate(files):
        read = read_file(path)
        assert not read.errors, read.errors
        lake.append([record for _, record in read.records], producer="samples",
                     batch_no=number)
    lake.materialize()
    return root


def test_notebook_is_stored_clean():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    lake = _sample_lake(tmp_path / "lake")
    monkeypatch.setenv("EVENTLAKE_LAKE", str(lake))
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel starts where Jupyter would open the notebook, data/notebooks/: the views
    # come from the repository's pyproject.toml, its path relative to that file's folder.
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    [sql] = [c for c in code_cells if "sql" in c.metadata.get("tags", [])]
    assert "payload->>'$.amount'" in sql.source
    results = [o for o in sql.outputs if o.output_type == "execute_result"]
    assert results, "the SQL cell produced no output"
    text = results[0]["data"]["text/plain"]
    assert "balance_cents" in text and "acct-" in text
    [views] = [c for c in code_cells if "others = [" in c.source]
    shown = "".join(o.get("text", "") for o in views.outputs if o.output_type == "stream")
    assert "balances (reducer)" in shown, shown
    [typed] = [c for c in code_cells if "typed" in c.metadata.get("tags", [])]
    tables = "".join(o["data"].get("text/plain", "") for o in typed.outputs
                     if o.output_type == "display_data")
    assert "BIGINT" in tables and "acct-" in tables, tables
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the plot cell showed no figure"
