"""GradBench's ``hello`` eval: ``square(x) = x * x`` and ``double(x)``, the derivative of
``square`` at ``x`` (that is ``2 x``), by ``nad.grad``. Inputs are bare floats (no runs)."""
import nbautodiff as nad

from .function import as_float, function


def sq(x):
    return x * x


d_sq = nad.grad(sq)


def prepare(x):
    return (float(x),)


@function(prepare=prepare, output=as_float, repeated=False)
def square(x):
    return sq(x)


@function(prepare=prepare, output=as_float, repeated=False)
def double(x):
    return d_sq(x)


FUNCTIONS = {"square": square, "double": double}
EXAMPLES = [1.0]
