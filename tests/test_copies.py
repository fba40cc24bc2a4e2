"""Copy propagation and dead stores (``nbautodiff.transforms.copies``): hand-written cases of what
each rewrite may and may not do, and random programs whose values the rewrite must keep."""
from __future__ import annotations

import ast
import random
import textwrap

import pytest

from nbautodiff.transforms.copies import propagate_copies, remove_dead_stores


def rewritten(source: str) -> str:
    function = ast.parse(textwrap.dedent(source)).body[0]
    return ast.unparse(remove_dead_stores(propagate_copies(function)))


def run(source: str, *args):
    namespace = {}
    exec(source, namespace)
    return namespace["f"](*args)


def test_a_chain_of_copies_reads_its_source():
    out = rewritten("""
        def f(a):
            g = a
            b = g
            g = b
            c = g * 2.0
            return c
        """)
    assert out == "def f(a):\n    c = a * 2.0\n    return c"


def test_a_copy_ends_where_its_source_is_bound_again():
    out = rewritten("""
        def f(a):
            b = a
            a = a + 1.0
            return b * a
        """)
    assert "return b * a" in out and "b = a" in out


def test_a_copy_made_before_a_loop_is_not_read_through_inside_it():
    source = """
        def f(a, n):
            b = a
            for i in range(n):
                c = b
                b = c + a
                a = a * 0.5
            return b
        """
    out = rewritten(source)
    for n in (0, 1, 3):
        assert run(out, 1.5, n) == run(textwrap.dedent(source), 1.5, n)
    assert "b = a" in out


def test_a_store_read_on_the_next_iteration_stays():
    out = rewritten("""
        def f(a, n):
            s = 0.0
            t = 0.0
            for i in range(n):
                s = s + t
                t = a * i
            return s
        """)
    assert "t = a * i" in out and "t = 0.0" in out


def test_an_overwritten_store_goes_and_a_conditional_one_stays():
    out = rewritten("""
        def f(a, c):
            x = a * 2.0
            x = a * 3.0
            y = a * 4.0
            if c:
                y = a * 5.0
            return x + y
        """)
    assert "a * 2.0" not in out and "a * 4.0" in out and "a * 5.0" in out


def test_branches_and_loops_left_empty_go():
    out = rewritten("""
        def f(a, n):
            t = 0.0
            for i in range(n):
                t = a * i
            if a > 0.0:
                t = 1.0
            j = 0
            for j in range(n):
                t = 2.0
            return j
        """)
    assert out == "def f(a, n):\n    j = 0\n    for j in range(n):\n        pass\n    return j"


def test_break_keeps_every_store_before_it():
    source = """
        def f(a, n):
            x = 0.0
            for i in range(n):
                x = a * i
                if i == 2:
                    break
                x = 1.0
            return x
        """
    out = rewritten(source)
    for n in (0, 2, 5):
        assert run(out, 2.0, n) == run(textwrap.dedent(source), 2.0, n)


def test_stores_with_calls_that_may_have_effects_stay():
    out = rewritten("""
        def f(a, log):
            x = log.append(a)
            x = 1.0
            return x
        """)
    assert "log.append(a)" in out


def test_a_lambda_ends_every_copy():
    out = rewritten("""
        def f(a):
            b = a
            h = lambda: b
            b = 2.0
            return h()
        """)
    assert run(out, 1.0) == 2.0


def test_an_expression_shared_by_two_statements_is_read_through_at_each():
    function = ast.parse("def f(b, c):\n    a = b\n    if a:\n        pass\n    a = c\n"
                         "    if a:\n        pass\n    return a").body[0]
    function.body[3].test = function.body[1].test      # as the reverse sweep shares tests
    out = ast.unparse(propagate_copies(function))
    assert "if b:" in out and "if c:" in out, out


def test_a_loop_that_occurs_twice_gets_a_body_of_its_own_at_each():
    function = ast.parse("def f(n):\n    s = 0.0\n    t = 1.0\n    for i in range(n):\n"
                         "        t = s\n        s = 2.0\n    return t").body[0]
    loop = function.body[2]
    function.body.append(loop)                        # the same loop object, after the return
    out = ast.unparse(remove_dead_stores(propagate_copies(function)))
    assert out.count("t = s") == 1 and out.count("for i in range(n)") == 1, out


# ---- random programs --------------------------------------------------------------------------

NAMES = ("a", "b", "c", "d", "e")


def _expression(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(NAMES)
    if choice < 0.55:
        return repr(round(rng.uniform(-2, 2), 2))
    op = rng.choice(("+", "-", "*"))
    return f"({rng.choice(NAMES)} {op} {rng.choice(NAMES + ('i', '0.5'))})"


def _statements(rng: random.Random, depth: int, count: int, indent: str) -> list[str]:
    lines = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.12 and depth < 3:
            lines.append(f"{indent}for i in range({rng.randint(0, 3)}):")
            lines += _statements(rng, depth + 1, rng.randint(1, 4), indent + "    ")
            if rng.random() < 0.2:
                lines.append(f"{indent}    if {rng.choice(NAMES)} > 1.0:")
                lines.append(f"{indent}        {rng.choice(('break', 'continue'))}")
        elif kind < 0.22 and depth < 3:
            lines.append(f"{indent}if {rng.choice(NAMES)} > {rng.uniform(-1, 1):.2f}:")
            lines += _statements(rng, depth + 1, rng.randint(1, 3), indent + "    ")
            if rng.random() < 0.5:
                lines.append(f"{indent}else:")
                lines += _statements(rng, depth + 1, rng.randint(1, 3), indent + "    ")
        elif kind < 0.3:
            lines.append(f"{indent}{rng.choice(NAMES)} += {_expression(rng)}")
        elif kind < 0.34:
            lines.append(f"{indent}log.append({rng.choice(NAMES)})")
        elif kind < 0.6:
            lines.append(f"{indent}{rng.choice(NAMES)} = {rng.choice(NAMES)}")
        else:
            lines.append(f"{indent}{rng.choice(NAMES)} = {_expression(rng)}")
    return lines


def random_program(seed: int) -> str:
    rng = random.Random(seed)
    lines = ["def f(a, b, log):", "    i = 0", "    c = a - b", "    d = 0.5", "    e = 1.0"]
    lines += _statements(rng, 0, rng.randint(4, 14), "    ")
    returned = rng.sample(NAMES, rng.randint(1, 3))
    lines.append(f"    return ({', '.join(returned)},)")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(300))
def test_random_programs_compute_the_same_values(seed):
    source = random_program(seed)
    out = rewritten(source)
    for a, b in ((0.3, -1.2), (1.7, 0.4), (-0.8, 2.5)):
        before, after = [], []
        expected = run(source, a, b, before)
        assert run(out, a, b, after) == expected, (source, out)
        assert after == before, (source, out)
