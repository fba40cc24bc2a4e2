"""``fastmath=True``: reduction loops that are products of rows, computed by BLAS (issue 8).

A loop nest such as

    for i in range(n):
        z = b[i]
        for j in range(m):
            z += W[i, j] * h[j]
        out[i] = math.tanh(z)

spends its time in a strict-order sum that does not vectorise. :func:`raise_products` replaces
the reduction loop by a read of a product computed before the loops, here
``_nad_mm1 = _nad_blas.matvec_rows(W, h, 0, n, m)`` before ``for i`` and ``z = z + _nad_mm1[i]``
in place of ``for j``. The product is a whole-array primitive with its own derivative rules
(:mod:`nbautodiff.rules`, :mod:`nbautodiff.kernels.products`), so the reverse and forward transforms,
and forward over reverse, differentiate it like ``@``: one ``gemv``/``gemm`` per product in
each sweep instead of a scalar loop, and no tape of the loop's operands.

This reassociates sums: the product sums ``W[i, j] * h[j]`` in BLAS's order and adds the result
to ``z`` once, so results change in the last bits. That is why it is opt-in (``fastmath=True``
on ``grad``, ``value_and_grad``, ``vjp``, ``reverse``, ``forward``, ``jvp``, ``hessian``).

What is recognised, exactly (anything else is left as it is):

* the reduction loop is ``for j in range(0, M, 1)`` whose body is, in three-address form,
  ``acc += X[.., j] * Y[.., j]`` (``acc = acc + ...`` or ``acc += ...``, either operand order;
  the temporaries are read nowhere else) on float64 arrays; each operand is a 1-D ``v[j]`` or a
  row ``A[e, j]`` of a 2-D array (``j`` last); ``acc`` is a float64 scalar; ``j`` is read
  nowhere but in loops over ``j``;
* the product is hoisted before the outermost loop ``L`` of the loops that directly contain
  the reduction (no ``if`` between) such that nothing in ``L`` rebinds or writes ``X``, ``Y``
  or any array that may alias them (an alias, a view, an argument passed to a call); each row
  index ``e`` is then either the variable of a loop inside ``L`` (a *free* index: the product
  has a dimension for it) or a value that ``L`` does not assign; each such loop, and the
  reduction, runs ``range(0, N, 1)`` with ``N`` known before ``L``;
* no free index: ``dot_rows``; one: ``matvec_rows``; two different ones: ``matmul_nt`` (a
  whole matrix of ``N x K`` products, indexed in the loops' order).

Bounds outside an operand's shape raise ``IndexError`` in the product, as the loop would with
bounds checking.
"""
from __future__ import annotations

import ast
import copy

from numba import types as nbtypes

from nbautodiff import annotations as anno, naming, rules
from nbautodiff.analysis.activity import assigned_names, view_origin
from nbautodiff.codegen import parameters
from nbautodiff.kernels import products

_PURE_CALLS = ("rule", "array", "zero", "constructor", "copy")   # write none of their arguments
_PRODUCTS = {"dot": products.dot_rows, "matvec": products.matvec_rows,
             "matmul": products.matmul_nt}


def raise_products(tree: ast.FunctionDef, types: dict) -> int:
    """Rewrite every recognised reduction loop of ``tree`` (normalised, in place); ``types``
    gets the products' types. Returns how many loops were replaced."""
    count = 0
    while True:
        aliases = _alias_classes(tree, types)
        for chain, container, loop in _reduction_sites(tree.body, [], tree.body):
            plan = _plan(tree, types, aliases, chain, loop)
            if plan is not None:
                count += 1
                _apply(tree, types, plan, container, loop, count)
                break
        else:
            return count


# ---- where the reduction loops are --------------------------------------------------------

def _reduction_sites(body: list, chain: list, container: list):
    """(enclosing loops that directly nest it, with their containers; its own container; loop)
    for every ``for`` statement, innermost last."""
    for statement in body:
        if isinstance(statement, ast.For):
            yield chain, body, statement
            yield from _reduction_sites(statement.body, chain + [(body, statement)], statement.body)
        elif isinstance(statement, ast.If):
            yield from _reduction_sites(statement.body, [], statement.body)
            yield from _reduction_sites(statement.orelse, [], statement.orelse)
        elif isinstance(statement, ast.While):
            yield from _reduction_sites(statement.body, [], statement.body)


def _walk(node_or_body):
    nodes = node_or_body if isinstance(node_or_body, list) else [node_or_body]
    for node in nodes:
        yield from ast.walk(node)


def _counted_range(loop: ast.For):
    """The bound ``N`` of ``for v in range(0, N, 1)``; None for another range."""
    it = loop.iter
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
            and len(it.args) == 3 and not it.keywords):
        return None
    lo, hi, step = it.args
    if _const(lo) != 0 or _const(step) != 1 or not isinstance(hi, (ast.Name, ast.Constant)):
        return None
    return hi


def _const(node):
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


# ---- the pattern ---------------------------------------------------------------------------

def _match(tree: ast.FunctionDef, types: dict, loop: ast.For):
    """(accumulator, operands, tail statements, product temporary) of a reduction loop
    ``acc += X[.., j] * Y[.., j]``, or None. An operand is (array, row index or None)."""
    bound = _counted_range(loop)
    if bound is None or loop.orelse or not isinstance(loop.target, ast.Name):
        return None
    j = loop.target.id
    body = loop.body
    if not all(isinstance(s, ast.Assign) and len(s.targets) == 1
               and isinstance(s.targets[0], ast.Name) for s in body):
        return None
    defs = {s.targets[0].id: s.value for s in body}
    if len(defs) != len(body):
        return None
    last = body[-1]
    acc = last.targets[0].id
    total = last.value
    tail = [last]
    if isinstance(total, ast.Name) and total.id in defs and len(body) >= 2:
        tail = [body[-2], last]                             # s = acc + p; acc = s
        if body[-2].targets[0].id != total.id:
            return None
        total = defs[total.id]
    if not (isinstance(total, ast.BinOp) and isinstance(total.op, ast.Add)):
        return None
    sides = [total.left, total.right]
    if not all(isinstance(x, ast.Name) for x in sides):
        return None
    names = [x.id for x in sides]
    if names.count(acc) != 1:
        return None
    product = names[1 - names.index(acc)]
    value = defs.get(product)
    if not (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult)
            and isinstance(value.left, ast.Name) and isinstance(value.right, ast.Name)):
        return None
    loads = {value.left.id, value.right.id}
    if set(defs) != loads | {product, acc} | {s.targets[0].id for s in tail}:
        return None                                         # anything else in the body
    operands = []
    for name in (value.left.id, value.right.id):
        operand = _operand(defs.get(name), j, types)
        if operand is None:
            return None
        operands.append(operand)
    if types.get(acc) != nbtypes.float64 or acc == j or acc in loads:
        return None
    temporaries = (loads | {product} | {s.targets[0].id for s in tail}) - {acc}
    inside = {id(n) for n in _walk(loop)}
    for node in _walk(tree.body):
        if isinstance(node, ast.Name) and node.id in temporaries and id(node) not in inside:
            return None                                     # a temporary used elsewhere
    if _read_outside_its_loops(tree.body, j):
        return None
    if any(name in (acc, j) for name, _ in operands):
        return None
    return acc, operands, tail, product, bound


def _operand(value, j: str, types: dict):
    """(array, row index or None) of a load ``X[j]`` or ``X[e, j]`` of a float64 array."""
    if not (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)):
        return None
    array = value.value.id
    typ = types.get(array)
    if not (isinstance(typ, nbtypes.Array) and typ.dtype == nbtypes.float64):
        return None
    index = value.slice
    if typ.ndim == 1 and isinstance(index, ast.Name) and index.id == j:
        return array, None
    if typ.ndim == 2 and isinstance(index, ast.Tuple) and len(index.elts) == 2:
        first, second = index.elts
        if isinstance(second, ast.Name) and second.id == j and \
                (_const(first) is not None or (isinstance(first, ast.Name) and first.id != j
                                               and types.get(first.id) in nbtypes.integer_domain)):
            return array, first
    return None


def _read_outside_its_loops(body: list, j: str) -> bool:
    """Whether ``j`` is read anywhere but inside a loop over ``j``."""
    for statement in body:
        if isinstance(statement, ast.For) and statement.target.id == j:
            continue
        if isinstance(statement, (ast.For, ast.While, ast.If)):
            own = statement.iter if isinstance(statement, ast.For) else statement.test
            if any(isinstance(n, ast.Name) and n.id == j for n in ast.walk(own)):
                return True
            if _read_outside_its_loops(statement.body + statement.orelse, j):
                return True
            continue
        if any(isinstance(n, ast.Name) and n.id == j and isinstance(n.ctx, ast.Load)
               for n in ast.walk(statement)):
            return True
    return False


# ---- where to compute the product ----------------------------------------------------------

def _alias_classes(tree: ast.FunctionDef, types: dict) -> dict[str, set]:
    """For each array name, the names that may share its memory (aliases and views, both ways,
    anywhere in the function)."""
    classes: dict[str, set] = {}
    for node in _walk(tree.body):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            origin = view_origin(node, types)
            if origin:
                merged = classes.get(origin, {origin}) | classes.get(node.targets[0].id,
                                                                      {node.targets[0].id})
                for name in merged:
                    classes[name] = merged
    return classes


def _region_effects(region: list) -> tuple[set, set]:
    """(names assigned, arrays written or handed to a call) in ``region``."""
    assigned, written = set(), set()
    for node in _walk(region):
        if isinstance(node, ast.stmt):
            assigned.update(assigned_names(node))
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name):
                        written.add(sub.value.id)
                    if isinstance(sub, ast.Name):
                        assigned.add(sub.id)
        if isinstance(node, ast.Call) and anno.get(node, anno.KIND, None) not in _PURE_CALLS:
            # any other call may write the arrays it is given (a user function, an in-place
            # helper), the receiver of a method call too
            for arg in node.args:
                if isinstance(arg, ast.Name):
                    written.add(arg.id)
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                written.add(node.func.value.id)
    return assigned, written


def _resolved_bound(bound, region: list, assigned: set):
    """``bound`` as an atom known before ``region``: itself, or the atom that ``region``
    copies into it once (``_t = n``); None if it is computed inside."""
    if isinstance(bound, ast.Constant):
        return bound
    if bound.id not in assigned:
        return bound
    copies = [n for n in _walk(region) if isinstance(n, ast.stmt) and bound.id in assigned_names(n)]
    if len(copies) == 1 and isinstance(copies[0], ast.Assign) and \
            isinstance(copies[0].value, (ast.Name, ast.Constant)):
        source = copies[0].value
        if isinstance(source, ast.Constant) or source.id not in assigned:
            return source
    return None


def _plan(tree, types, aliases, chain, loop):
    matched = _match(tree, types, loop)
    if matched is None:
        return None
    acc, operands, tail, product, bound = matched
    for level in range(len(chain) + 1):
        region = [chain[level][1]] if level < len(chain) else [loop]
        loops = [statement for _, statement in chain[level:]]
        assigned, written = _region_effects(region)
        touched = assigned | written
        if any(aliases.get(array, {array}) & touched for array, _ in operands):
            continue
        params = set(parameters(tree))
        if any(aliases.get(array, {array}) & params for array, _ in operands) and \
                any(aliases.get(p, {p}) & written for p in params):
            continue                  # two arguments may be one array: keep the loop's order
        free, fixed, ok = [], [], True
        for array, index in operands:
            owner = None
            if isinstance(index, ast.Name):
                owner = next((L for L in loops if L.target.id == index.id), None)
                if owner is None and index.id in assigned:
                    ok = False
            free.append(owner)
            fixed.append(index if owner is None else None)
        if not ok:
            continue
        owners = [f for f in free if f is not None]
        if len(owners) == 2 and owners[0] is owners[1]:
            continue
        sizes = {}
        for owner in owners + [loop]:
            size = _counted_range(owner)
            size = None if size is None else _resolved_bound(size, region, assigned)
            if size is None:
                ok = False
                break
            sizes[id(owner)] = size
        if not ok:
            continue
        hoist = (chain[level][0], chain[level][1]) if level < len(chain) else None
        return dict(acc=acc, operands=operands, tail=tail, product=product, free=free,
                    fixed=fixed, sizes=sizes, loops=loops, hoist=hoist)
    return None


def _apply(tree, types, plan, container, loop, count):
    name = f"{naming.PRODUCT}{count}"
    (a, _), (b, _) = plan["operands"]
    fa, fb = plan["free"]
    ra, rb = (ast.Constant(0) if r is None else r for r in plan["fixed"])
    m = plan["sizes"][id(loop)]
    if fa is None and fb is None:
        kind, args, index = "dot", [a, ra, b, rb, m], []
    elif fa is None or fb is None:
        (A, fA), (v, rv) = ((a, fa), (b, rb)) if fb is None else ((b, fb), (a, ra))
        kind, args, index = "matvec", [A, v, rv, plan["sizes"][id(fA)], m], [fA]
    else:
        order = plan["loops"]
        (A, fA), (B, fB) = sorted([(a, fa), (b, fb)], key=lambda x: order.index(x[1]))
        kind = "matmul"
        args = [A, B, plan["sizes"][id(fA)], plan["sizes"][id(fB)], m]
        index = [fA, fB]
    function = _PRODUCTS[kind]
    call = ast.Call(func=ast.Attribute(value=ast.Name(id=naming.PRODUCT_MODULE, ctx=ast.Load()),
                                       attr=function.__name__, ctx=ast.Load()),
                    args=[ast.Name(id=x, ctx=ast.Load()) if isinstance(x, str)
                          else copy.deepcopy(x) for x in args], keywords=[])
    anno.set(call, anno.KIND, "array")
    anno.set(call, anno.TARGET, rules.ARRAY_CALLS[(id(function), False)])
    compute = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=call)
    types[name] = nbtypes.float64 if not index else nbtypes.Array(nbtypes.float64, len(index), "C")
    if index:
        elements = [ast.Name(id=f.target.id, ctx=ast.Load()) for f in index]
        read = ast.Subscript(value=ast.Name(id=name, ctx=ast.Load()),
                             slice=elements[0] if len(elements) == 1 else
                             ast.Tuple(elts=elements, ctx=ast.Load()), ctx=ast.Load())
    else:
        read = ast.Name(id=name, ctx=ast.Load())
    load = ast.Assign(targets=[ast.Name(id=plan["product"], ctx=ast.Store())], value=read)
    replacement = [load] + [copy.deepcopy(s) for s in plan["tail"]]
    for statement in replacement + [compute]:
        ast.copy_location(statement, loop)
    position = next(k for k, s in enumerate(container) if s is loop)
    container[position:position + 1] = replacement
    if plan["hoist"] is None:
        position = next(k for k, s in enumerate(container) if s is replacement[0])
        container.insert(position, compute)
    else:
        outer_container, outer = plan["hoist"]
        position = next(k for k, s in enumerate(outer_container) if s is outer)
        outer_container.insert(position, compute)
    ast.fix_missing_locations(tree)
