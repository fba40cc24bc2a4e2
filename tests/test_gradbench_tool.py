"""The GradBench tool (benchmarks/gradbench/tools/nbautodiff), in-process, against central
differences.

GradBench's own eval drivers (``gradbench.evals.lse.run`` and ``gradbench.evals.llsq.run`` of
the checkout named by ``$GRADBENCH``) generate tiny inputs and send every message (start,
define, evaluate, analysis) through the tool's message handler in this process, instead of
through pipes. The validator is replaced: instead of running the manual C++ tool, each output
is compared with an independent NumPy version of the eval's function (primal) and with central
differences of it (gradient). A second test runs the tool's line loop (``serve``) on a recorded
session. Skipped without a GradBench checkout (``GRADBENCH=<path>``) or without pydantic (which
GradBench's eval code imports).
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL_DIR = ROOT / "benchmarks" / "gradbench" / "tools" / "nbautodiff"
CHECKOUT = Path(os.environ.get("GRADBENCH", "/nonexistent")).expanduser()

pytestmark = pytest.mark.skipif(
    not (CHECKOUT / "python/gradbench/gradbench/eval.py").exists(),
    reason="no GradBench checkout (set GRADBENCH=<path to a gradbench/gradbench clone>)")


@pytest.fixture(scope="module")
def gradbench():
    pytest.importorskip("pydantic")
    for path in (str(CHECKOUT / "python/gradbench"), str(TOOL_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import gradbench.eval
    from nad_gradbench.protocol import Tool
    return gradbench.eval, Tool


def lse_numpy(x):
    return float(np.log(np.sum(np.exp(x))))


def llsq_numpy(x, n):
    t = -1.0 + 2.0 * np.arange(n) / (n - 1)
    r = np.sign(t) - np.vander(t, len(x), increasing=True) @ x
    return 0.5 * float(r @ r)


def central_differences(f, x, h=1e-6):
    g = np.empty_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


REFERENCES = {
    "lse": lambda raw: (lse_numpy, np.asarray(raw["x"])),
    "llsq": lambda raw: (lambda x: llsq_numpy(x, raw["n"]), np.asarray(raw["x"])),
}


def make_eval_class(eval_module, tool_class, checked):
    """A ``SingleModuleValidatedEval`` that talks to the tool in-process and validates with
    NumPy and central differences; every check lands in ``checked``."""

    class InProcessEval(eval_module.SingleModuleValidatedEval):
        def __init__(self, *, module, validator):
            super().__init__(module=module, validator=self.check)
            self.tool = tool_class()

        def send(self, message):
            request = json.loads(json.dumps({"id": self.id} | message))
            response = self.tool.respond(request)
            if message["kind"] == "end":
                return None
            response = json.loads(json.dumps(response))       # what a pipe would carry
            assert response["id"] == self.id
            self.id += 1
            return response

        def check(self, function, raw, output):
            f, x = REFERENCES[self.module](raw)
            if function == "primal":
                ok = abs(output - f(x)) <= 1e-9 * max(1.0, abs(f(x)))
            else:
                expected = central_differences(f, x)
                ok = np.allclose(output, expected, rtol=1e-6, atol=1e-7)
            checked.append((self.module, function, len(x), ok))
            return eval_module.Analysis(valid=bool(ok), error=None if ok else
                                        f"{function}: {output} against {f(x)}")

    return InProcessEval


@pytest.mark.parametrize("name, argv", [
    ("lse", ["-n", "5", "12"]),
    ("llsq", ["-n", "9", "33", "-m", "4"]),
])
def test_eval_driver_in_process_against_central_differences(gradbench, monkeypatch, name, argv):
    eval_module, tool_class = gradbench
    import importlib
    run = importlib.import_module(f"gradbench.evals.{name}.run")
    checked: list = []
    monkeypatch.setattr(run, "SingleModuleValidatedEval",
                        make_eval_class(eval_module, tool_class, checked))
    monkeypatch.setattr(sys, "argv", [name, *argv, "--min-runs", "2", "--min-seconds", "0"])
    run.main()
    sizes = [int(v) for v in argv[1:argv.index("-m")]] if "-m" in argv else \
        [int(v) for v in argv[1:]]
    assert len(checked) == 2 * len(sizes)                # a primal and a gradient per size
    assert all(ok for *_, ok in checked), checked
    assert {function for _, function, _, _ in checked} == {"primal", "gradient"}


def test_serve_answers_each_line_and_stops_at_end(gradbench):
    _, _ = gradbench
    from nad_gradbench.protocol import serve
    x = [0.3, -1.2, 2.5, 0.0]
    messages = [{"id": 0, "kind": "start", "eval": "lse"},
                {"id": 1, "kind": "define", "module": "lse"},
                {"id": 2, "kind": "evaluate", "module": "lse", "function": "gradient",
                 "input": {"x": x, "min_runs": 3, "min_seconds": 0}},
                {"id": 3, "kind": "analysis", "of": 2, "valid": True},
                {"id": 4, "kind": "define", "module": "no-such-eval"},
                {"id": 5, "kind": "end"},
                {"id": 6, "kind": "start"}]              # after end: never read
    out = io.StringIO()
    serve(io.StringIO("".join(json.dumps(m) + "\n" for m in messages)), out)
    responses = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in responses] == [0, 1, 2, 3, 4]
    assert responses[0]["tool"] == "nbautodiff"
    assert responses[1]["success"] is True
    assert [t["name"] for t in responses[1]["timings"]] == ["compile"]
    evaluated = responses[2]
    assert evaluated["success"] is True
    assert [t["name"] for t in evaluated["timings"]] == ["evaluate"] * 3
    expected = central_differences(lse_numpy, np.asarray(x))
    np.testing.assert_allclose(evaluated["output"], expected, rtol=1e-6, atol=1e-7)
    assert responses[3] == {"id": 3}
    assert responses[4]["success"] is False and "no-such-eval" in responses[4]["error"]
