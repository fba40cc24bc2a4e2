"""GradBench's ``lstm`` eval (ADBench's LSTM, with diagonal weight matrices): the loss of a
stack of ``l`` LSTM layers predicting each character of a sequence from the previous one, and
its gradient with respect to ``main_params`` and ``extra_params``.

Shapes, as the eval sends them: ``main_params`` ``(2 l, 4 b)`` (row ``2 i``: the weights of
layer ``i`` for the forget, input, output gates and the change, ``b`` each; row ``2 i + 1``:
their biases), ``extra_params`` ``(3, b)`` (input weights, output weights, output biases),
``state`` ``(2 l, b)`` (hidden state of layer ``i`` in row ``2 i``, cell state in ``2 i + 1``),
``sequence`` ``(c, b)``. ``objective`` is ``cpp/gradbench/evals/lstm.hpp`` in loops over a copy
of the state; ``jacobian`` is ``nad.grad(objective, argnums=(0, 1))``, flattened row by row
and concatenated (main, then extra), as the eval asks.
"""
import math

import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, function


@numba.njit
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit
def objective(main_params, extra_params, state, sequence):
    l = main_params.shape[0] // 2
    b = sequence.shape[1]
    c = sequence.shape[0]
    st = state.copy()
    ypred = np.empty(b)
    total = 0.0
    count = 0
    for t in range(c - 1):
        for i in range(b):
            ypred[i] = sequence[t, i] * extra_params[0, i]
        for layer in range(l):
            w = 2 * layer
            for i in range(b):
                if layer == 0:
                    inp = ypred[i]
                else:
                    inp = st[w - 2, i]           # the hidden state of the layer below
                hidden = st[w, i]
                forget = sigmoid(inp * main_params[w, i] + main_params[w + 1, i])
                ingate = sigmoid(hidden * main_params[w, b + i] + main_params[w + 1, b + i])
                outgate = sigmoid(inp * main_params[w, 2 * b + i]
                                  + main_params[w + 1, 2 * b + i])
                change = math.tanh(hidden * main_params[w, 3 * b + i]
                                   + main_params[w + 1, 3 * b + i])
                st[w + 1, i] = st[w + 1, i] * forget + ingate * change
                st[w, i] = outgate * math.tanh(st[w + 1, i])
        top = 2 * (l - 1)
        for i in range(b):
            ypred[i] = st[top, i] * extra_params[1, i] + extra_params[2, i]
        s = 0.0
        for i in range(b):
            s += math.exp(ypred[i])
        lse = math.log(s + 2.0)
        for i in range(b):
            total += sequence[t + 1, i] * (ypred[i] - lse)
        count += b
    return -total / count


d_objective = nad.grad(objective, argnums=(0, 1))


def prepare(raw):
    return tuple(np.asarray(raw[name], dtype=np.float64)
                 for name in ("main_params", "extra_params", "state", "sequence"))


def jacobian_output(grads):
    d_main, d_extra = grads
    return np.concatenate([d_main.ravel(), d_extra.ravel()]).tolist()


@function(prepare=prepare, output=as_float)
def objective_function(*args):
    return objective(*args)


@function(prepare=prepare, output=jacobian_output)
def jacobian(*args):
    return d_objective(*args)


FUNCTIONS = {"objective": objective_function, "jacobian": jacobian}
EXAMPLES = [{"main_params": [[0.1 * (i + j) for j in range(8)] for i in range(4)],
            "extra_params": [[0.2, 0.3], [0.4, 0.5], [0.1, 0.2]],
            "state": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]],
            "sequence": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
            "min_runs": 1, "min_seconds": 0}]
