"""offload under numba's CUDA simulator (tests/conftest.py turns it on where no GPU is asked
for): every offloaded function equals its CPU version on random inputs, derivatives equal the
CPU derivatives, and what cannot run in parallel is refused with its line."""
import inspect

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.errors import OffloadError, ParallelismError

import offload_cases as cases

RTOL = 1e-12


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_axpy_writes_back_into_the_callers_array(rng):
    x, y = rng.random(100), rng.random(100)
    expected = 2.5 * x + y
    f = nad.offload(cases.axpy)
    assert f(2.5, x, y) is None
    close(y, expected)
    actions = {m.name: m.action for m in f.plan.movements}
    assert actions == {"x": "copied in", "y": "copied in and out"}
    assert f.plan.bytes_to_device == 1600 and f.plan.bytes_to_host == 800


def test_heat_time_loop_with_swapped_arrays(rng):
    u = rng.random(60)
    expected = cases.heat(u.copy(), 0.2, 5)
    offloaded_u = u.copy()
    result = nad.offload(cases.heat)(offloaded_u, 0.2, 5)
    close(result, expected)
    assert isinstance(result, np.ndarray)


def test_reductions_sum_and_max(rng):
    x, y = rng.random(150) - 0.5, rng.random(150)
    s, m = nad.offload(cases.dot_and_max)(x, y)
    s_ref, m_ref = cases.dot_and_max(x, y)
    close(s, s_ref)
    assert m == m_ref


def test_numpy_scalar_functions_run_as_math(rng):
    x = rng.random(70)
    f = nad.offload(cases.exp_scaled)
    close(f(x, 0.7), cases.exp_scaled(x, 0.7))
    assert "math.exp" in f.source


def test_full_overwrite_needs_no_copy_in(rng):
    x = rng.random(40)
    out = np.full(40, np.nan)

    f = nad.offload(cases.axpy)
    f(1.0, x, out)                                # y read: copied
    assert f.plan.movements[1].action == "copied in and out"


def test_overlapping_accumulations_are_atomic(rng):
    idx = rng.integers(0, 5, 120)
    w = rng.random(120)
    f = nad.offload(cases.histogram)
    close(f(idx, w, 5), cases.histogram(idx, w, 5))
    assert "cuda.atomic.add" in f.source
    assert f.plan.kernels[0][6] == 1


def test_views_inner_loops_and_device_callees(rng):
    A, v = rng.random((9, 7)), rng.random(7)
    close(nad.offload(cases.matvec)(A, v), cases.matvec(A, v))


def test_namedtuple_fields_move_one_by_one(rng):
    s = cases.State(rng.random(30), np.zeros(30))
    f = nad.offload(cases.scale_state)
    f(s, 3.0)
    close(s.v, 3.0 * s.u)
    assert {m.name for m in f.plan.movements} == {"s.u", "s.v"}


def test_dataclass_and_tuple_fields(rng):
    fields = cases.Fields(rng.random(25), np.zeros(25), 1.5)
    pair = (rng.random(25), rng.random(25))
    reference = cases.Fields(fields.p.copy(), np.zeros(25), 1.5)
    total = nad.offload(cases.scale_fields)(fields, pair)
    expected = cases.scale_fields(reference, pair)
    close(fields.q, reference.q)
    close(total, expected)


def test_device_arrays_are_used_in_place(rng):
    from numba import cuda
    x, y = rng.random(50), rng.random(50)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    f = nad.offload(cases.axpy)
    f(2.0, dx, dy)
    close(dy.copy_to_host(), 2.0 * x + y)
    assert all(m.action == "on the device (in place)" for m in f.plan.movements)
    assert f.plan.bytes_to_device == 0


def test_results_stay_on_device_when_inputs_were(rng):
    from numba import cuda
    x = rng.random(30)
    out = nad.offload(cases.exp_scaled)(cuda.to_device(x), 0.5)
    assert not isinstance(out, np.ndarray)
    close(out.copy_to_host(), cases.exp_scaled(x, 0.5))


def test_plan_is_readable(rng):
    f = nad.offload(cases.dot_and_max)
    f(rng.random(20), rng.random(20))
    text = str(f.plan)
    assert "x" in text and "copied in" in text and "reduces s, m" in text
    assert "<table>" in f.plan._repr_html_()


@pytest.mark.parametrize("activity", ["grad", "value_and_grad"])
def test_gradient_on_the_device_equals_the_cpu_gradient(rng, activity):
    u = rng.random(40)
    derived = getattr(nad, activity)(cases.heat_loss, argnums=(0, 1))
    expected = derived(u, 0.3)
    f = nad.offload(derived)
    got = f(u, 0.3)
    if activity == "value_and_grad":
        close(got[0], expected[0])
        got, expected = got[1], expected[1]
    close(got[0], expected[0])
    close(got[1], expected[1])
    assert any(k[6] for k in f.plan.kernels)        # the shifted adjoints are atomic


def test_gradient_against_central_differences(rng):
    from fd import central_diff
    u = rng.random(30)
    g = nad.offload(nad.grad(cases.stencil_loss))(u, 0.7)
    np.testing.assert_allclose(g, central_diff(cases.stencil_loss, (u, 0.7)),
                               rtol=1e-6, atol=1e-9)


def test_reverse_and_forward_modes_offloaded(rng):
    u, du = rng.random(30), rng.random(30)
    rev = nad.reverse(cases.stencil_loss, nad.Duplicated, nad.Active)
    shadow_cpu, shadow_gpu = np.zeros(30), np.zeros(30)
    expected = rev(u, shadow_cpu, 0.7, 1.0)
    got = nad.offload(rev)(u, shadow_gpu, 0.7, 1.0)
    close(got[0], expected[0])
    close(got[1], expected[1])
    close(shadow_gpu, shadow_cpu)
    fwd = nad.forward(cases.stencil_loss, nad.Dual, nad.Const)
    close(nad.offload(fwd)(u, du, 0.7)[1], fwd(u, du, 0.7)[1])


@pytest.mark.parametrize("function, pattern", [
    (cases.carried, "not independent: u\\[i\\] .* u\\[i - 1\\]"),
    (cases.scalar_carried, "'t' carries a value from one iteration"),
    (cases.allocates_in_loop, "array allocation 'np.zeros' inside the parallel loop"),
    (cases.host_numpy, "uses array 'out' on the host"),
    (cases.no_prange, "no prange loop"),
])
def test_refused_with_the_line(rng, function, pattern):
    with pytest.raises((OffloadError, ParallelismError), match=pattern) as info:
        nad.offload(function)(rng.random(10))
    lines, first = inspect.getsourcelines(function)
    assert first <= info.value.lineno < first + len(lines)


def test_bad_devices_are_refused():
    from nbautodiff.kernels import gpu
    missing = gpu.device_count()
    with pytest.raises(OffloadError, match=f"no CUDA device {missing}"):
        nad.offload(cases.axpy, devices=[missing])
    with pytest.raises(OffloadError, match=f"no CUDA device {missing}"):
        nad.offload(cases.axpy, devices=[0, missing])
    with pytest.raises(OffloadError, match="devices must be"):
        nad.offload(cases.axpy, devices="some")


def test_bad_argument_is_named():
    with pytest.raises(OffloadError, match="argument 'x' of axpy\\(\\) is str"):
        nad.offload(cases.axpy)(1.0, "no", np.zeros(3))


def test_without_a_gpu_it_says_so_once_and_runs_on_the_cpu(tmp_path):
    import os
    import subprocess
    import sys
    script = tmp_path / "cpu.py"
    script.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "import numpy as np, nbautodiff as nad, offload_cases as cases\n"
        "from numba import cuda\n"
        "if cuda.is_available(): print('HAS GPU'); raise SystemExit\n"
        "x, y = np.arange(5.0), np.ones(5)\n"
        "f = nad.offload(cases.axpy)\n"
        "f(2.0, x, y); f(2.0, x, y)\n"
        "print(y.tolist())\n" % os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    if "HAS GPU" in done.stdout:
        pytest.skip("this machine has a GPU")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([1.0 + 4.0 * k for k in range(5)])
    lines = [line for line in done.stderr.splitlines() if "no CUDA GPU" in line]
    assert len(lines) == 1 and "parallel=True" in lines[0]


def test_batched_scalar_function_and_its_gradient(rng):
    axes = (0, None, None, None, 0)
    spots, vols = 80.0 + 40.0 * rng.random(40), 0.1 + 0.3 * rng.random(40)
    batched = nad.batch(cases.call_price, in_axes=axes)
    f = nad.offload(batched)
    close(f(spots, 100.0, 1.0, 0.02, vols), batched(spots, 100.0, 1.0, 0.02, vols))
    assert len(f.plan.kernels) == 1
    per_example = nad.batch(nad.grad(cases.call_price, argnums=(0, 4)), in_axes=axes)
    got = nad.offload(per_example)(spots, 100.0, 1.0, 0.02, vols)
    expected = per_example(spots, 100.0, 1.0, 0.02, vols)
    close(got[0], expected[0])
    close(got[1], expected[1])


@pytest.fixture
def two_devices():
    """Offload over two devices. The simulator has one: both halves of every launch run on
    device 0, each on its own copy of the arrays, so the splitting and merging are exercised
    all the same (a real two-GPU run: tests/test_offload_gpu.py)."""
    def make(function):
        f = nad.offload(function)
        f.devices = (0, 0)
        return f
    return make


def test_two_devices_split_every_kind_of_write(rng, two_devices):
    x, y = rng.random(37), rng.random(37)
    expected = 2.0 * x + y
    f = two_devices(cases.axpy)
    f(2.0, x, y)
    close(y, expected)                                       # rows
    assert [k[7] for k in f.plan.kernels] == [0, 0] and sum(k[2] for k in f.plan.kernels) == 37
    u = rng.random(41)
    close(two_devices(cases.heat)(u.copy(), 0.2, 4), cases.heat(u.copy(), 0.2, 4))
    s, m = two_devices(cases.dot_and_max)(x - 0.5, y)       # reductions of both halves
    s_ref, m_ref = cases.dot_and_max(x - 0.5, y)
    close(s, s_ref)
    assert m == m_ref
    idx, w = rng.integers(0, 6, 50), rng.random(50)
    h = two_devices(cases.histogram)
    close(h(idx, w, 6), cases.histogram(idx, w, 6))
    A, v = rng.random((9, 5)), rng.random(5)
    close(two_devices(cases.matvec)(A, v), cases.matvec(A, v))
    B = np.zeros((5, 9))
    t = two_devices(cases.transpose_into)
    t(A, B)
    close(B, 2.0 * A.T)
    assert {how for how, _ in f.plan.merges} == {"rows"}
    assert {how for how, _ in h.plan.merges} == {"added"}
    assert {how for how, _ in t.plan.merges} == {"changed"}


def test_two_devices_gradient(rng, two_devices):
    u = rng.random(33)
    g = nad.grad(cases.heat_loss, argnums=(0, 1))
    expected = g(u, 0.3)
    got = two_devices(g)(u, 0.3)
    close(got[0], expected[0])
    close(got[1], expected[1])


def test_out_of_device_memory_is_a_clear_error(rng, monkeypatch):
    from nbautodiff.kernels import gpu

    def full_device(*args, **kwargs):
        raise RuntimeError("[CUresult.CUDA_ERROR_OUT_OF_MEMORY] Call to cuMemAlloc results in "
                           "CUDA_ERROR_OUT_OF_MEMORY")
    monkeypatch.setattr(gpu, "to_device", full_device)
    with pytest.raises(OffloadError, match="axpy\\(\\): the GPU ran out of memory \\(1.6 KiB"):
        nad.offload(cases.axpy)(1.0, rng.random(100), rng.random(100))


@pytest.mark.parametrize("arguments", [
    lambda z: (z, z),
    lambda z: (z[1:], z[:-1]),
    lambda z: (z[::2], z.reshape(3, 4)[0]),
], ids=["same-array", "overlapping-views", "strided-and-reshaped-views"])
def test_arguments_sharing_memory_with_a_written_one_are_refused(arguments, rng):
    """Each argument gets a device copy of its own: a write through one would not be seen
    through the other, so sharing is refused (naming both), never a silently different result."""
    z = rng.random(12)
    before = z.copy()
    with pytest.raises(OffloadError, match="arguments 'x' and 'y' share memory .* writes 'y'"):
        nad.offload(cases.scale_then_sum)(*arguments(z))
    assert np.array_equal(z, before)


def test_disjoint_views_of_one_array_run_as_on_the_cpu(rng):
    z = rng.random(12)
    expected_z = z.copy()
    expected = cases.scale_then_sum(expected_z[:6], expected_z[6:])
    close(nad.offload(cases.scale_then_sum)(z[:6], z[6:]), expected)
    close(z, expected_z)
