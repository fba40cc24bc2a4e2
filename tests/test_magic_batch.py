"""%%batch in an in-process IPython shell: names, options, errors, the --compare plot and table.

These tests run the magic over a stand-in defined here (a Python loop over the numba-compiled
function, stacking the results), monkeypatched as ``nad.batch``; the stand-in records its
arguments, so the tests check what the magic asks for (tests/test_batch.py tests nad.batch).
Batched results are compared with a loop of plain Python calls on random inputs.
"""
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.display import Image

import nbautodiff as nad
from fd import assert_grad_close, central_diff
from nbautodiff.pipeline import program
from nbautodiff.magics.batch import parse_axes
from nbautodiff.magics.batch_compare import BATCHED, LOOP, VECTORIZE
from nbautodiff.magics.speedup import SpeedComparison


def stand_in_batch(fun, in_axes=0, out_axes=0, parallel=False, layout="auto",
                   vector_math=False):
    """vmap semantics by a loop of single compiled calls (NOT fused: a test double only)."""
    try:
        single = program.primal(fun).dispatcher
    except nad.AutodiffError:          # a derived function, compiled already
        single = fun

    def batched(*args):
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        sizes = {np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None}
        (n,) = sizes
        results = [single(*(a if ax is None else np.take(a, i, axis=ax)
                            for a, ax in zip(args, axes))) for i in range(n)]
        if isinstance(results[0], tuple):
            outs = out_axes if isinstance(out_axes, tuple) else (out_axes,) * len(results[0])
            return tuple(np.stack([r[k] for r in results], axis=outs[k])
                         for k in range(len(results[0])))
        return np.stack(results, axis=out_axes)

    stand_in_batch.calls.append(dict(fun=fun, in_axes=in_axes, out_axes=out_axes,
                                     parallel=parallel, layout=layout,
                                     vector_math=vector_math))
    return batched


CELL = '''import math

def predict(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        s += w[i] * math.tanh(x[i])
    return s

def moments(x):
    m = 0.0
    for i in range(x.shape[0]):
        m += x[i]
    m = m / x.shape[0]
    return m, x * m
'''


@pytest.fixture
def batch_api(monkeypatch):
    stand_in_batch.calls = []
    monkeypatch.setattr(nad, "batch", stand_in_batch, raising=False)
    return stand_in_batch.calls


@pytest.fixture
def ns(ip, rng, batch_api):
    ip.user_ns.update(np=np, x0=rng.normal(size=4), w0=rng.normal(size=4),
                      xs=rng.normal(size=(4, 7)))
    return ip.user_ns


def test_cell_functions_get_batched_versions(ip, ns, batch_api):
    result = ip.run_cell_magic("batch", "--func predict --in-axes 1 None --parallel", CELL)
    assert list(result.names) == ["predict_batch"]
    assert ns["predict_batch"] is result.names["predict_batch"]
    (call,) = batch_api
    assert call["fun"] is ns["predict"]
    assert (call["in_axes"], call["out_axes"], call["parallel"]) == ((1, None), 0, True)
    xs, w0 = ns["xs"], ns["w0"]
    expected = [ns["predict"](xs[:, j], w0) for j in range(xs.shape[1])]
    np.testing.assert_allclose(ns["predict_batch"](xs, w0), expected, rtol=1e-13)
    assert "in_axes=(1, None)" in repr(result) and "across cores" in repr(result)


def test_layout_and_vector_math_options_reach_batch(ip, ns, batch_api):
    result = ip.run_cell_magic("batch", "--func predict --in-axes 0 None --layout inner "
                                        "--vector-math", CELL)
    (call,) = batch_api
    assert (call["layout"], call["vector_math"]) == ("inner", True)
    assert "inner layout" in repr(result) and "vectorisable math" in repr(result)


def test_the_real_batch_reports_the_layout_it_chose(ip, rng):
    ip.user_ns.update(np=np, x1=rng.normal(size=4), w1=rng.normal(size=4))
    result = ip.run_cell_magic("batch", "--func predict --in-axes 0 None --compare (x1, w1) "
                                        "--sizes 3 30", CELL)
    assert "inner layout" in repr(result)
    assert "exactly" in result.comparisons["predict_batch"].note
    result = ip.run_line_magic("batch", "--func moments --compare (x1,) --sizes 3")
    assert "one compiled call per slice" in repr(result) and "returns an array" in repr(result)


def test_default_axes_batch_every_function_of_the_cell(ip, ns, batch_api):
    result = ip.run_cell_magic("batch", "", CELL)
    assert set(result.names) == {"predict_batch", "moments_batch"}
    assert all((c["in_axes"], c["out_axes"], c["parallel"]) == (0, 0, False) for c in batch_api)
    xs = ns["xs"]
    means, scaled = ns["moments_batch"](xs)
    np.testing.assert_allclose(means, xs.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(scaled, xs * xs.mean(axis=1)[:, None], rtol=1e-13)


def test_per_example_gradients_by_batching_a_gradient(ip, ns, batch_api):
    ns["nad"] = nad
    ip.run_cell("def sq_error(p, x, y):\n    r = p[0] * x + p[1] * x * x - y\n    return r * r\n"
                "sq_error_grad = nad.grad(sq_error)\n")
    result = ip.run_line_magic("batch", "-f sq_error_grad --in-axes None 0 0 "
                                        "--compare (x0[:2], 0.3, 1.2) --sizes 3 30")
    assert "exactly" in result.comparisons["sq_error_grad_batch"].note
    p, xs, ys = ns["x0"][:2], ns["xs"][:, 0], ns["xs"][:, 1]
    per_example = ns["sq_error_grad_batch"](p, xs, ys)
    assert per_example.shape == (xs.size, 2)
    for i in range(xs.size):
        assert_grad_close(per_example[i], central_diff(ns["sq_error"], (p, xs[i], ys[i]), 0),
                          rtol=1e-6, label=f"example {i}")


def test_line_magic_batches_an_earlier_function(ip, ns, batch_api):
    ip.run_cell("def earlier(x):\n    return x[0] * x[1] ** 3\n")
    result = ip.run_line_magic("batch", "-f earlier --out-axes 0 --name vec_{name}")
    xs = ns["xs"]
    np.testing.assert_allclose(result.names["vec_earlier"](xs), xs[:, 0] * xs[:, 1] ** 3,
                               rtol=1e-13)
    assert "vec_earlier" in ns


def test_help(ip, batch_api):
    text = ip.run_cell_magic("batch", "--help", "raise RuntimeError('the cell must not run')")
    for option in ("--in-axes", "--out-axes", "--parallel", "--compare", "--sizes"):
        assert option in text.data
    assert "np.vectorize" in ip.run_line_magic("batch", "--help").data
    assert batch_api == []


@pytest.mark.parametrize("line, message", [
    ("--no-such-option", "unknown option --no-such-option"),
    ("--in-axes zero", "'zero' is not an axis"),
    ("--out-axes 0.5", "not an axis"),
    ("-f predict --in-axes 0 None 0", "3 axes for predict"),
    ("-f predict --compare (x0,)", "1 example arguments"),
    ("-f predict --compare (undefined_name, 1.0)", "NameError"),
    ("-f predict --compare (x0, w0) --sizes 0 10", "at least 1"),
    ("-f predict --sizes 10", "give --compare"),
    ("-f missing_function", "no such name"),
    ("--name 1{name}", "not a Python name"),
    ("--name same", "no {name}"),
    ("--layout sideways", "expected one of auto, inner, outer"),
    ("--layout outer --vector-math", "applies to the inner layout"),
])
def test_bad_options_raise_usage_errors(ip, ns, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("batch", line, CELL)


def test_line_magic_needs_func(ip, ns):
    with pytest.raises(UsageError, match="--func"):
        ip.run_line_magic("batch", "--in-axes 0")


@pytest.mark.parametrize("words, axes", [
    (["0"], 0), (["None"], None), (["-1"], -1), (["0", "None"], (0, None)),
    (["0,None"], (0, None)), (["(0,", "None)"], (0, None)), (["(1,)"], (1,)), (["[2]"], (2,)),
])
def test_parse_axes(words, axes):
    assert parse_axes(words, "--in-axes") == axes


def test_compare_shows_a_png_and_the_speedups(ip, ns):
    result = ip.run_cell_magic("batch", "-f predict --in-axes 0 None --compare (x0, w0) "
                                        "--sizes 100 10", CELL)
    comparison = result.comparisons["predict_batch"]
    assert comparison.sizes == (10, 100)
    assert set(comparison.times) == {BATCHED, LOOP, VECTORIZE}
    assert all(t is not None and t > 0 for times in comparison.times.values() for t in times)
    speedups = comparison.speedups()
    assert set(speedups) == {LOOP, VECTORIZE}
    for label, ratios in speedups.items():
        assert ratios == [comparison.times[label][k] / comparison.times[BATCHED][k]
                          for k in range(2)]
    assert "exactly" in comparison.note
    outputs = result.outputs()
    tables = [item for item in outputs if isinstance(item, SpeedComparison)]
    images = [item for item in outputs if isinstance(item, Image)]
    assert len(tables) == 1 and len(images) == 1 and images[0].data[:4] == b"\x89PNG"
    table = tables[0]._repr_html_()
    assert "<table" in table and f"speedup vs {LOOP}" in table and f"speedup vs {VECTORIZE}" in table
    assert f"{speedups[LOOP][1]:.3g}x" in table and f"{speedups[VECTORIZE][0]:.3g}x" in str(table)


def test_compare_of_a_function_returning_a_tuple(ip, ns):
    result = ip.run_cell_magic("batch", "-f moments --compare x0 --sizes 5", CELL)
    assert "exactly" in result.comparisons["moments_batch"].note


def test_compare_reports_a_batched_function_that_disagrees_with_single_calls(ip, ns, monkeypatch):
    def reversed_batch(fun, **options):
        correct = stand_in_batch(fun, **options)
        return lambda *args: correct(*args)[::-1]
    monkeypatch.setattr(nad, "batch", reversed_batch)
    result = ip.run_cell_magic("batch", "-f predict --in-axes 0 None --compare (x0, w0) "
                                        "--sizes 6", CELL)
    assert "differ" in result.comparisons["predict_batch"].note


def test_slow_methods_are_skipped_at_larger_sizes():
    from nbautodiff.magics.speedup import measure
    import time

    times = measure({"fast": lambda n: (lambda: None),
                     "slow": lambda n: (lambda: time.sleep(0.002 * n))},
                    sizes=(1, 10, 1000), budget_s=0.05)
    assert times["fast"][2] is not None
    assert times["slow"][:2] != [None, None] and times["slow"][2] is None
