"""The complex-step extensions of the primitives (nbautodiff.checks.complex_math): Im f(x + i h) / h
equals a central difference of the real primitive, at points inside each domain; the real part
is the real primitive's value."""
import math

import numpy as np
import pytest

from nbautodiff import rules

from nbautodiff.checks import complex_math

H = 1e-60
POINTS = {"acosh": 1.7, "log": 0.8, "log1p": 0.4, "log10": 0.8, "log2": 0.8, "sqrt": 0.8,
          "asin": 0.3, "acos": -0.3, "atanh": 0.4, "to_float": 0.7}
BINARY = {"atan2": [(0.7, -1.2), (-0.3, 0.2), (2.0, 0.1)], "hypot": [(0.7, -1.2)],
          "power": [(0.7, 2.5), (-1.3, 3.0)], "pow_": [(1.7, -0.5), (-2.0, 2.0)],   # x < 0: d/dx
          "copysign": [(0.7, -1.2)], "fmod": [(5.3, 1.2), (-5.3, 1.2)], "mod": [(-5.3, 1.2)],
          "minimum": [(0.7, -1.2)], "maximum": [(0.7, -1.2)],
          "add": [(0.7, -1.2)], "sub": [(0.7, -1.2)], "mul": [(0.7, -1.2)], "div": [(0.7, -1.2)]}
SCALAR_RULES = sorted({r.name for r in rules.CALLS.values()}
                      | {r.name for r in rules.OPERATORS.values()} - {"floordiv", "dot"})


def real_function(name):
    for key, rule in list(rules.CALLS.items()) + list(rules.OPERATORS.items()):
        if rule.name == name:
            break
    spelled = {"pow_": lambda x, y: x ** y, "mod": lambda x, y: x % y, "add": lambda x, y: x + y,
               "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
               "neg": lambda x: -x, "pos": lambda x: +x, "abs_": abs, "minimum": min,
               "maximum": max, "to_float": float, "power": math.pow}
    if name in spelled:
        return spelled[name]
    module, _, attr = rule.spelling.partition(".")
    return getattr({"math": math, "np": np}[module], attr)


def central(f, x, h=1e-6):
    return (4 * (f(x + h / 2) - f(x - h / 2)) / h - (f(x + h) - f(x - h)) / (2 * h)) / 3


@pytest.mark.parametrize("name", SCALAR_RULES)
def test_complex_extension_matches_the_real_derivative(name):
    real, extended = real_function(name), complex_math.BY_RULE[name]
    if name in BINARY:
        for x, y in BINARY[name]:
            for k in range(1 if x < 0 and name in ("power", "pow_") else 2):
                args = [np.complex128(x), np.complex128(y)]
                args[k] += 1j * H
                z = extended(*args)
                fd = central(lambda t: real(*[t if j == k else v for j, v in enumerate((x, y))]),
                             (x, y)[k])
                assert abs(z.real - real(x, y)) <= 1e-15 * max(1.0, abs(real(x, y)))
                assert abs(z.imag / H - fd) <= 1e-7 * max(1.0, abs(fd)), (name, x, y, k)
        return
    x = POINTS.get(name, 0.7 if name != "fabs" else -0.7)
    z = extended(np.complex128(x) + 1j * H)
    assert abs(z.real - real(x)) <= 1e-15 * max(1.0, abs(real(x)))
    assert abs(z.imag / H - central(real, x)) <= 1e-7 * max(1.0, abs(central(real, x))), name


def test_integer_powers_of_negative_bases_are_exact():
    z = complex_math.power(np.complex128(-2.0 + 1j * H), 103.0)
    assert z.real == (-2.0) ** 103 and z.imag / H == pytest.approx(103 * 2.0 ** 102, rel=1e-15)
    a = complex_math.power(np.array([-2.0 + 1j * H, 3.0]), np.array([3.0, 2.0]))
    assert np.allclose(a.imag / H, [12.0, 0.0])


def test_real_call_and_constructors():
    assert complex_math.real_call(math.floor, np.complex128(2.7 + 1j * H)) == 2
    z = complex_math.constructed(np.zeros, 3)
    assert z.dtype == np.complex128
    assert complex_math.constructed(np.zeros, 3, dtype=np.int64).dtype == np.int64
