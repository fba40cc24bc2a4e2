"""The tutorial notebooks, executed through a real Jupyter kernel (nbclient)."""
import functools
import os
from pathlib import Path

import nbformat
import pytest

from nbautodiff.magics.run_notebook import execute_notebook, main, write_html

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

pytestmark = pytest.mark.notebook


@functools.cache
def executed(name: str, timeout: int = 300):
    """``notebooks/name`` executed once per process, its kernel compiling with numba's default
    optimisation (the tutorials run loops long enough for -O0 code to cost more than it saves;
    the suite itself compiles at -O0, see conftest.py)."""
    saved = os.environ.get("NUMBA_OPT")
    os.environ["NUMBA_OPT"] = "3"
    try:
        return execute_notebook(NOTEBOOKS / name, timeout=timeout)
    finally:
        if saved is None:
            del os.environ["NUMBA_OPT"]
        else:
            os.environ["NUMBA_OPT"] = saved


def same_worker(notebook: str):
    """Run the tests of one notebook on one xdist worker (``--dist loadgroup``), so that the
    notebook executes once per run, not once per worker."""
    return pytest.mark.xdist_group(notebook)


@pytest.fixture(scope="module")
def quickstart():
    return executed("quickstart.ipynb")


def _outputs(notebook):
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


@same_worker("quickstart")
def test_quickstart_runs_without_errors(quickstart):
    assert not [out for out in _outputs(quickstart) if out.output_type == "error"]


@same_worker("quickstart")
def test_quickstart_shows_the_gradient_check(quickstart):
    html = [out.data["text/html"] for out in _outputs(quickstart)
            if "text/html" in out.get("data", {})]
    tables = [h for h in html if "<table" in h and "gradient check" in h]
    assert tables and "gradient check passed" in tables[0]
    assert any("image/png" in out.get("data", {}) for out in _outputs(quickstart))


@same_worker("quickstart")
def test_quickstart_renders_to_html(quickstart, tmp_path):
    page = write_html(quickstart, tmp_path / "quickstart.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in page and "gradient check passed" in page


def test_runner_fails_on_a_cell_error(tmp_path, capsys):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nbformat.write(notebook, tmp_path / "broken.ipynb")
    assert main([str(tmp_path / "broken.ipynb"), str(tmp_path / "broken.html")]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    assert (tmp_path / "broken.html").exists()


@pytest.fixture(scope="module")
def batching():
    return executed("batching.ipynb")


@same_worker("batching")
def test_batching_notebook_runs_without_errors(batching):
    assert not [out for out in _outputs(batching) if out.output_type == "error"]


@same_worker("batching")
def test_batching_notebook_shows_the_speedup_tables_and_plots(batching):
    html = [out.data["text/html"] for out in _outputs(batching)
            if "text/html" in out.get("data", {})]
    assert sum("speedup vs loop of compiled calls" in h for h in html) == 2   # mlp, grad
    assert any("speedup vs n scalar passes" in h for h in html)               # the Jacobian
    pngs = [out for out in _outputs(batching) if "image/png" in out.get("data", {})]
    assert len(pngs) >= 4


@pytest.fixture(scope="module")
def offload_notebook():
    return executed("offload.ipynb", timeout=600)


def test_offload_notebook_runs_with_its_plots(offload_notebook):
    outputs = _outputs(offload_notebook)
    assert not [out for out in outputs if out.output_type == "error"]
    assert sum("image/png" in out.get("data", {}) for out in outputs) >= 4
    text = "".join(out.get("text", "") for out in outputs)
    assert "not independent" in text and "u[i - 1]" in text


@pytest.fixture(scope="module")
def pitfalls():
    return executed("pitfalls.ipynb")


def _sections(notebook) -> dict:
    """Section heading -> the outputs of the code cells under it."""
    sections, current = {}, None
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            current = cell.source.splitlines()[0][3:]
            sections[current] = []
        elif cell.cell_type == "code" and current is not None:
            sections[current] += cell.outputs
    return sections


PITFALLS_SAY = {
    "1. Choosing": "central differences cannot resolve",
    "2. Kinks": "evaluated near a kink",
    "3. Branches": "evaluated near a branch boundary",
    "4. `floor`": "zero derivative through math.floor",
    "5. Lookup": "lookup table",
    "6. Fixed-point": "the derivative has not converged when the loop stops",
    "7. Linear": "the derivative has not converged when the loop stops",
    "8. Probabilistic": "many branch decisions close to their boundary",
    "9. Chaos": "grows exponentially with the loop length",
    "10. Time-averaged": "does not settle as the loop length",
    "12. NaN": "NaN/inf in the gradient",
}


def test_pitfalls_notebook_explains_each_pitfall(pitfalls):
    """The notebook runs without errors; each of its 12 sections has a plot and a gradient
    check, and the sections listed above say what their pitfall is and what to do. One test,
    as the notebook takes a minute to run (xdist's groups have split tests of one notebook
    over workers, each running it)."""
    assert not [out for out in _outputs(pitfalls) if out.output_type == "error"]
    sections = _sections(pitfalls)
    assert len(sections) == 12
    problems = []
    for title, outputs in sections.items():
        data = [out.get("data", {}) for out in outputs]
        if not any("image/png" in d for d in data):
            problems.append(f"no plot in section {title!r}")
        if not any("nbautodiff-check" in d.get("text/html", "") for d in data):
            problems.append(f"no gradient check in section {title!r}")
        says = next((text for start, text in PITFALLS_SAY.items() if title.startswith(start)),
                    None)
        html = " ".join(d.get("text/html", "") for d in data)
        if says is not None and not (says in html and "What to do" in html):
            problems.append(f"section {title!r} does not say {says!r} and what to do")
    assert not [start for start in PITFALLS_SAY if not any(t.startswith(start) for t in sections)]
    assert not problems, "\n".join(problems)
