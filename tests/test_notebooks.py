"""Executes every notebook top to bottom with the small-size switch (so they cannot rot).

Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (dev extra) and ``scikit-learn``
(t-SNE in the quickstart); skipped with a reason when they are absent.
"""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  pytest.importorskip("sklearn")
  monkeypatch.setenv("MMDD_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("MMDD_NOTEBOOK_WORKDIR", str(tmp_path))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.delenv("MMDD_STORE_DIR", raising=False)
  # The kernel imports the working tree (the notebooks' setup cell finds it from cwd).
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  # One CPU device in the kernel (the test session's fake-device flag is not needed there).
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "Device" in outputs or "cpu" in outputs.lower()   # jax.devices() printed
