"""Array helpers that generated code calls for whole-array NumPy operations and their adjoints.

Two kinds, all compiled by numba into the caller (no Python objects):

* primal operations numba lacks in nopython mode, with NumPy's semantics: reductions along an
  axis (``sum_axis``, ``max_axis``, ``min_axis``, ``mean_axis``);
* adjoint building blocks: ``unbroadcast`` (sum a contribution down to an operand's shape: the
  adjoint of NumPy broadcasting), ``expand_axis`` (the adjoint of a reduction along an axis),
  ``matmul_left``/``matmul_right`` (the adjoints of ``@``/``np.dot`` for every rank
  combination), ``prod_adjoint`` (exact also when elements are zero), ``extremum_adjoint``
  (the adjoint of ``np.max``/``np.min``: to the first extremal element, NumPy's ``argmax``).

Helpers whose code depends on ranks are numba ``overload``s whose implementation is generated
for the ranks at hand, so each compiles to plain loops.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .compiled import helper

_jit = helper


def _loops(rank: int, body: str, shape: str, indent: str = "    ") -> str:
    """Source of ``rank`` nested loops ``i0, i1, ...`` over ``shape`` around ``body`` (lines)."""
    lines, pad = [], indent
    for k in range(rank):
        lines.append(f"{pad}for i{k} in range({shape}[{k}]):")
        pad += "    "
    lines += [pad + line for line in body.splitlines()]
    return "\n".join(lines)


def _compile(source: str, name: str):
    namespace = {"np": np}
    exec(source, namespace)
    return namespace[name]


# ---- in-place operators -----------------------------------------------------------------------

def in_place(target, value):
    """The end of ``target op= ...`` (normalised to ``t = target op ...; target = t``) in a
    primal: for an array, ``value`` stored into ``target``'s own array (which aliases, views and
    the caller see, as NumPy's in-place operators do) and that array returned; otherwise
    ``value`` (a number is rebound)."""
    raise NotImplementedError("called from compiled code only")


@overload(in_place)
def _in_place(target, value):
    if isinstance(target, types.Array) and isinstance(value, types.Array) \
            and target.ndim == value.ndim and target.dtype == value.dtype and target.mutable:
        def store(target, value):
            if target.shape != value.shape:     # (NumPy would broadcast or refuse: rebound)
                return value
            target[...] = value
            return target
        return store
    return lambda target, value: value


# ---- the adjoint of broadcasting -------------------------------------------------------------

def unbroadcast(contribution, like):
    """``contribution`` summed down to the shape of ``like`` (a scalar: summed whole)."""
    raise NotImplementedError("called from compiled code only")


@overload(unbroadcast)
def _unbroadcast(contribution, like):
    if not isinstance(contribution, types.Array):
        if isinstance(like, types.Array):
            return lambda contribution, like: np.full(like.shape, contribution)
        return lambda contribution, like: contribution
    if not isinstance(like, types.Array):
        return lambda contribution, like: np.sum(contribution)
    if like.ndim == 0:                                 # a 0-d array: the whole sum, as 0-d
        def zero_d(contribution, like):
            out = np.empty(like.shape, contribution.dtype)
            out[()] = np.sum(contribution)
            return out
        return zero_d
    g, t = contribution.ndim, like.ndim
    if t > g:
        return None
    lead = g - t
    index = ", ".join(f"i{lead + k} * keep{k}" for k in range(t)) or "0"
    keeps = "\n".join(f"    keep{k} = 0 if like.shape[{k}] == 1 else 1" for k in range(t))
    same = " and ".join(f"contribution.shape[{lead + k}] == like.shape[{k}]" for k in range(t))
    source = ("def impl(contribution, like):\n"
              + (f"    if {same}:\n        return contribution\n" if lead == 0 and t else "")
              + f"    out = np.zeros(like.shape, contribution.dtype)\n{keeps}\n"
              + _loops(g, f"out[{index}] += contribution[{', '.join(f'i{k}' for k in range(g))}]",
                       "contribution.shape")
              + "\n    return out\n")
    return _compile(source, "impl")


# ---- np.array of a list display --------------------------------------------------------------

def empty_for(shape, *elements):
    """An empty array for ``np.array([...])`` of ``elements`` (normalisation stores them into
    it): of shape ``shape`` (the nesting of the lists) followed by the elements' shape when they
    are arrays, and of the dtype NumPy would give (the elements' types unified)."""
    raise NotImplementedError("called from compiled code only")


@overload(empty_for)
def _empty_for(shape, *elements):
    kinds = list(elements[0].types if len(elements) == 1 and
                 isinstance(elements[0], types.StarArgTuple) else elements)
    if not kinds:
        return None
    arrays = [k for k in kinds if isinstance(k, types.Array)]
    if arrays and (len(arrays) != len(kinds) or len({a.ndim for a in arrays}) != 1):
        return None
    scalar = [k.dtype if isinstance(k, types.Array) else k for k in kinds]
    unified = scalar[0]
    for k in scalar[1:]:
        unified = numba.core.registry.cpu_target.typing_context.unify_pairs(unified, k)
        if unified is None:
            return None
    dtype = np.bool_ if isinstance(unified, types.Boolean) else \
        numba.np.numpy_support.as_dtype(unified)
    if arrays:
        return lambda shape, *elements: np.empty(shape + elements[0].shape, dtype)
    return lambda shape, *elements: np.empty(shape, dtype)


# ---- reductions along an axis ----------------------------------------------------------------

def _reduction_impl(rank: int, combine: str, start: str, finish: str = "acc"):
    """Source of ``f(a, axis)`` reducing axis ``axis`` of a rank-``rank`` array."""
    rest = rank - 1
    outer = ", ".join(f"i{k}" for k in range(rest))
    body = (f"acc = {start}\n"
            f"for j in range(m.shape[{rest}]):\n"
            f"    value = m[{outer + ', ' if outer else ''}j]\n"
            f"    acc = {combine}\n"
            f"out[{outer or '()'}] = {finish}")
    source = ("def impl(a, axis):\n"
              "    axis = axis + a.ndim if axis < 0 else axis\n"      # NumPy's negative axes
              "    order = [k for k in range(a.ndim) if k != axis] + [axis]\n"
              f"    m = np.transpose(a, ({', '.join(f'order[{k}]' for k in range(rank))},))\n"
              f"    out = np.empty(m.shape[:{rest}], a.dtype)\n"
              + _loops(rest, body, "m.shape") + "\n    return out\n")
    return _compile(source, "impl")


def _register_reduction(name: str, combine: str, start: str, finish: str = "acc"):
    def stub(a, axis):
        raise NotImplementedError("called from compiled code only")
    stub.__name__ = name

    @overload(stub)
    def _impl(a, axis):
        if isinstance(a, types.Array) and a.ndim >= 1:
            return _reduction_impl(a.ndim, combine, start, finish)
        return None
    return stub


max_axis = _register_reduction("max_axis", "value if value > acc or j == 0 else acc", "-np.inf")
min_axis = _register_reduction("min_axis", "value if value < acc or j == 0 else acc", "np.inf")
sum_axis = _register_reduction("sum_axis", "acc + value", "0.0")
mean_axis = _register_reduction("mean_axis", "acc + value", "0.0", "acc / m.shape[-1]")


def expand_axis(g, like, axis):
    """``g`` (the adjoint of a reduction of ``like`` along ``axis``) repeated along ``axis``."""
    raise NotImplementedError("called from compiled code only")


@overload(expand_axis)
def _expand_axis(g, like, axis):
    def impl(g, like, axis):
        return np.zeros(like.shape, like.dtype) + np.expand_dims(g, axis)
    return impl


# ---- products ----------------------------------------------------------------------------------

def matmul_left(g, a, b):
    """Adjoint of ``a`` in ``z = a @ b`` (or ``np.dot(a, b)``), for 1-D and 2-D operands."""
    raise NotImplementedError("called from compiled code only")


def matmul_right(g, a, b):
    """Adjoint of ``b`` in ``z = a @ b`` (or ``np.dot(a, b)``), for 1-D and 2-D operands."""
    raise NotImplementedError("called from compiled code only")


def _blas_layout(matrix) -> bool:
    """Whether BLAS takes ``matrix`` (or its transpose) as it is: C or Fortran order. Copying
    the transpose of a C-ordered data matrix to C order would cost several times the product."""
    return matrix.layout in ("C", "F")


@overload(matmul_left)
def _matmul_left(g, a, b):
    ranks = (a.ndim, b.ndim)
    if ranks == (1, 1):
        return lambda g, a, b: g * b
    if ranks == (2, 1):
        return lambda g, a, b: np.outer(g, b)
    if ranks == (1, 2):
        if _blas_layout(b):
            return lambda g, a, b: b @ g
        return lambda g, a, b: np.ascontiguousarray(b) @ g
    if ranks == (2, 2):
        if _blas_layout(b):
            return lambda g, a, b: g @ b.T
        return lambda g, a, b: g @ np.ascontiguousarray(b).T
    return None


@overload(matmul_right)
def _matmul_right(g, a, b):
    ranks = (a.ndim, b.ndim)
    if ranks == (1, 1):
        return lambda g, a, b: g * a
    if ranks == (2, 1):
        if _blas_layout(a):
            return lambda g, a, b: g @ a
        return lambda g, a, b: g @ np.ascontiguousarray(a)
    if ranks == (1, 2):
        return lambda g, a, b: np.outer(a, g)
    if ranks == (2, 2):
        if _blas_layout(a):
            return lambda g, a, b: a.T @ g
        return lambda g, a, b: np.ascontiguousarray(a).T @ g
    return None


def solve_matrix_adjoint(g, a, z):
    """Adjoint of ``a`` in ``z = np.linalg.solve(a, b)``: ``-solve(a.T, g) z^T``."""
    raise NotImplementedError("called from compiled code only")


@overload(solve_matrix_adjoint)
def _solve_matrix_adjoint(g, a, z):
    if z.ndim == 1:
        return lambda g, a, z: -np.outer(np.linalg.solve(np.ascontiguousarray(a.T), g), z)
    return lambda g, a, z: -(np.linalg.solve(np.ascontiguousarray(a.T), g)
                             @ np.ascontiguousarray(z.T))


@_jit
def zeros_like(x):
    """Zeros of ``x``'s shape and dtype, C-ordered whatever ``x``'s layout: numba's
    ``np.zeros_like`` cannot allocate for layout 'A', the type of a variable bound both to C-
    and to Fortran-ordered arrays (``B = A * 1.0`` ... ``B = A.T``), which shadows must allow."""
    return np.zeros(x.shape, x.dtype)


@_jit
def prod_adjoint(g, x):
    """Adjoint of ``np.prod(x)``: ``g`` times the product of all other elements (exact with zeros)."""
    flat = x.ravel()
    n = flat.shape[0]
    out = np.empty(n, x.dtype)
    running = 1.0
    for k in range(n):
        out[k] = running
        running *= flat[k]
    running = 1.0
    for k in range(n - 1, -1, -1):
        out[k] *= running * g
        running *= flat[k]
    return out.reshape(x.shape)


@_jit
def extremum_adjoint(g, x, z):
    """Adjoint of ``z = np.max(x)`` or ``np.min(x)``: ``g`` to the first element equal to ``z``."""
    out = np.zeros(x.size, x.dtype)
    flat = x.ravel()
    for k in range(flat.shape[0]):
        if flat[k] == z:
            out[k] = g
            break
    return out.reshape(x.shape)


@_jit
def det_cofactor(a):
    """The cofactor matrix of square ``a`` (the gradient of ``np.linalg.det``: the adjugate
    transposed), finite for singular matrices too: from the SVD ``a = u diag(s) vt``, it is
    ``det(u) det(vt) u diag(p) vt`` with ``p[i]`` the product of the singular values but ``s[i]``."""
    n = a.shape[0]
    u, s, vt = np.linalg.svd(np.ascontiguousarray(a))
    p = np.ones(n, a.dtype)
    for i in range(n):
        for j in range(n):
            if j != i:
                p[i] *= s[j]
    sign = np.linalg.det(u) * np.linalg.det(vt)
    out = np.empty((n, n), a.dtype)
    for i in range(n):
        for j in range(n):
            acc = 0.0
            for k in range(n):
                acc += u[i, k] * p[k] * vt[k, j]
            out[i, j] = sign * acc
    return out


@_jit
def det_cofactor_tangent(a, da):
    """Tangent of ``det_cofactor(a)`` along ``da``: entry (i, j) is the tangent of the signed
    minor, ``(-1)**(i + j)`` times the cofactors of the minor against the minor of ``da``."""
    n = a.shape[0]
    out = np.zeros((n, n), a.dtype)
    if n == 1:
        return out
    m = np.empty((n - 1, n - 1), a.dtype)
    dm = np.empty((n - 1, n - 1), a.dtype)
    for i in range(n):
        for j in range(n):
            for r in range(n - 1):
                for c in range(n - 1):
                    m[r, c] = a[r + (r >= i), c + (c >= j)]
                    dm[r, c] = da[r + (r >= i), c + (c >= j)]
            sign = 1.0 if (i + j) % 2 == 0 else -1.0
            out[i, j] = sign * np.sum(det_cofactor(m) * dm)
    return out


def extremum_axis_adjoint(g, x, z, axis):
    """Adjoint of ``z = max_axis(x, axis)`` (or ``min_axis``): each ``g`` to the first element
    of its slice equal to the extremum."""
    raise NotImplementedError("called from compiled code only")


@overload(extremum_axis_adjoint)
def _extremum_axis_adjoint(g, x, z, axis):
    def impl(g, x, z, axis):
        hit = x == np.zeros(x.shape, x.dtype) + np.expand_dims(z, axis)
        first = np.cumsum(hit.astype(np.int64), axis=axis) == 1
        return np.where(hit & first, np.zeros(x.shape, x.dtype) + np.expand_dims(g, axis), 0.0)
    return impl


def extremum_axis_tangent(d, x, z, axis):
    """Tangent of ``z = max_axis(x, axis)`` (or ``min_axis``): in each slice, the tangent ``d``
    of its first element equal to the extremum."""
    raise NotImplementedError("called from compiled code only")


@overload(extremum_axis_tangent)
def _extremum_axis_tangent(d, x, z, axis):
    def impl(d, x, z, axis):
        picked = extremum_axis_adjoint(np.ones(z.shape, x.dtype), x, z, axis)
        return sum_axis(picked * d, axis)
    return impl


# ---- integer-array and boolean-mask indexing ---------------------------------------------------
# A gather ``y = A[index]`` (an index with an integer or boolean array in it) copies elements;
# ``positions(A)[index]`` is the same selection of the elements' flat positions in ``A``, so the
# adjoints follow whatever the selection did, with repeated elements.

@_jit
def positions(like):
    """The flat (C order) position of each element of ``like``, in ``like``'s shape."""
    return np.arange(like.size).reshape(like.shape)


@_jit
def scatter_add(into, selected, g):
    """``into.flat[selected.flat[k]] += g.flat[k]`` for every k: the adjoint of a gather
    (``selected``: ``positions(A)[index]``), repeated positions accumulated."""
    for k in range(selected.size):
        p = selected.flat[k]
        into.flat[p] += g.flat[k]


@_jit
def stored_adjoint(into, selected):
    """The adjoint of the value of a store ``y[index] = v`` (``into``: the shadow of ``y``,
    ``selected``: ``positions(y)[index]``), in the selection's shape: the adjoint of the element
    where each value went, for the last value stored at each position (NumPy's last write
    wins), zero for the values written over in the same store."""
    out = np.zeros(selected.shape, into.dtype)
    seen = np.zeros(into.size, np.bool_)
    for k in range(selected.size - 1, -1, -1):
        p = selected.flat[k]
        if not seen[p]:
            seen[p] = True
            out.flat[k] = into.flat[p]
    return out


@_jit
def zero_at(into, selected):
    """``into.flat[selected.flat[k]] = 0`` for every k: the elements a store overwrote."""
    for k in range(selected.size):
        into.flat[selected.flat[k]] = 0


# ---- tangents of adjoint helpers (derivatives of derivatives) ---------------------------------

@_jit
def prod_adjoint_tangent(g, x, dg, dx):
    """Tangent of ``prod_adjoint(g, x)`` for tangents ``dg`` of ``g`` and ``dx`` of ``x``."""
    flat, dflat = x.ravel(), dx.ravel()
    n = flat.shape[0]
    out = np.empty(n, x.dtype)
    for i in range(n):
        others, spread = 1.0, 0.0
        for k in range(n):
            if k == i:
                continue
            partial = dflat[k]
            for j in range(n):
                if j != i and j != k:
                    partial *= flat[j]
            spread += partial
            others *= flat[k]
        out[i] = dg * others + g * spread
    return out.reshape(x.shape)


def solve_matrix_adjoint_tangent(g, a, z, dg, da, dz):
    """Tangent of ``solve_matrix_adjoint(g, a, z)`` for tangents ``dg``, ``da``, ``dz``."""
    raise NotImplementedError("called from compiled code only")


@_jit
def _solved_transposed(g, a, dg, da):
    """``w = solve(a.T, g)`` and its tangent."""
    at = np.ascontiguousarray(a.T)
    w = np.linalg.solve(at, g)
    return w, np.linalg.solve(at, dg - np.ascontiguousarray(da.T) @ w)


@overload(solve_matrix_adjoint_tangent)
def _solve_matrix_adjoint_tangent(g, a, z, dg, da, dz):
    if z.ndim == 1:
        def vector(g, a, z, dg, da, dz):
            w, dw = _solved_transposed(g, a, dg, da)
            return -(np.outer(dw, z) + np.outer(w, dz))
        return vector

    def matrix(g, a, z, dg, da, dz):
        w, dw = _solved_transposed(g, a, dg, da)
        return -(dw @ np.ascontiguousarray(z.T) + w @ np.ascontiguousarray(dz.T))
    return matrix
