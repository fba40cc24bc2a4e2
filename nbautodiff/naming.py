"""Conventions for generated names, in one place.

User code never starts names with ``_nad``: the source fence refuses such names, so generated
names cannot clash with the user's. Every generated name starts with :data:`RESERVED` and reads
as its prefix below says: ``_nad_b_x`` the adjoint of scalar ``x``, ``_nad_d_x`` the shadow of
array ``x``, ``_nad_dot_x`` the tangent of ``x`` (``_nad_dot0_x``, ``_nad_dot1_x``... in a
vector-mode pass), ``_nad_t3`` a temporary of normalisation, ``_nad_tf``/``_nad_ti`` the float
and int tapes. Generated code that is differentiated again has its own ``_nad_`` names renamed one
level up (``_nad_t1`` -> ``_nad1_t1``, see :func:`next_level`), so the names of a derivative of
a derivative cannot clash with them. Variants are named ``f__rev_<code>``, ``f__fwd_<code>``,
``f__batch_<code>`` (:func:`reverse_name`, :func:`forward_name`, :func:`batch_name`).
"""
from __future__ import annotations

RESERVED = "_nad"

TEMP = "_nad_t"              # temporaries introduced by normalisation: _nad_t1, _nad_t2...
SEQUENCE = "_nad_seq"         # a sequence iterated over (`for v in x`), + loop number
ITEM_INDEX = "_nad_it"        # the index of such a loop, + loop number
LIBRARY = "_nad_lib_"         # a library callable bound in a generated module
ADJOINT = "_nad_b_"           # adjoint of a scalar: _nad_b_x
SHADOW = "_nad_d_"            # shadow of an array: _nad_d_x
SEED = "_nad_seed"            # incoming cotangent of the result
RESULT = "_nad_result"        # the primal result kept for the caller
RETURN_VALUE = "_nad_retval"  # value of an early return
RETURN_FLAG = "_nad_returned"
BREAK_FLAG = "_nad_break"     # + loop number
CONTINUE_FLAG = "_nad_continue"
COUNTER = "_nad_count"        # iteration counter of a while loop, + loop number
LOOP_STOP, LOOP_STEP, LOOP_INDEX = "_nad_hi", "_nad_step", "_nad_k"
REVERSE_INDEX = "_nad_r"
ACCUMULATOR = "_nad_acc"      # local sum of the adjoint additions into one shadow element
GRAD_TMP = "_nad_g"           # incoming adjoint of the statement being reversed
CALL_RESULT = "_nad_res"
FLOAT_TAPE, FLOAT_TOP = "_nad_tf", "_nad_tf_n"
INT_TAPE, INT_TOP = "_nad_ti", "_nad_ti_n"
REFERENCES = "_nad_refs_"     # stack of the arrays successively bound to a variable
WORK_COPY = "_nad_in_"        # caller's array kept while the function works on a copy
TAPE_MODULE = "_nad_tape"     # the runtime helpers module as seen by generated code
CHECKPOINT_MODULE = "_nad_ckpt"  # the runtime of checkpointed loops as seen by generated code
CHECKPOINT = "_nad_ck"        # names of a checkpointed loop: _nad_ck3_plan, _nad_ck3_u...
CHECKPOINT_BYTES = "_nad_ck_bytes"    # bytes of the checkpoint buffers allocated so far
CALLEE_BYTES = "_nad_callee_bytes"    # largest tape + checkpoint bytes of a callee's call
ARRAY_MODULE = "_nad_arrays"  # nbautodiff.kernels.arrays as seen by generated code
PRODUCT_MODULE = "_nad_blas"   # nbautodiff.kernels.products as seen by generated code
PRODUCT = "_nad_mm"            # a product computed by BLAS in place of a loop nest (fastmath)
GENERATED_MODULE = "nbautodiff_generated"   # __name__ of the modules of generated code
UNUSED = "_nad_unused"        # a tangent nobody reads (of an element that has none)
TANGENT = "_nad_dot"          # tangent of a variable in forward mode: _nad_dot_x, _nad_dot0_x...
TUPLE_ELEMENT = "_nad_e"      # an element of a tuple variable: _nad_e0_t, _nad_e1_0_t (nested)
BATCH_CALLEE = "_nad_fn"      # the compiled function a batched function calls once per slice
BATCH_SIZE, BATCH_INDEX = "_nad_n", "_nad_i"
BATCH_OUT, BATCH_FIRST = "_nad_out", "_nad_first"   # result arrays; the result of slice 0
BATCH_LANE, BATCH_LANES = "_nad_l", "_nad_lanes"   # inner layout: a lane, lanes of a block
BATCH_BLOCK, BATCH_START = "_nad_blk", "_nad_start"  # ... a block, its first batch index
LANE_ARRAY = "_nad_lane_"     # ... a varying scalar's values, one per lane: _nad_lane_h
STAGED, STAGE_INDEX = "_nad_soa_", "_nad_s"   # ... a lane-major copy of a batched array
LANE_UNIFORM = "_nad_u"       # ... the uniform value a varying scalar is set to: _nad_u1
VECTOR_MATH = "_nad_vm"       # nbautodiff.kernels.vecmath as seen by generated code
BATCH_TYPED = "_nad_typed"    # in a batched function's stand-in: its code for argument types
OFFLOAD_HOST = "_nad_host_"   # the host part of an offloaded function: _nad_host_f
OFFLOAD_KERNEL = "_nad_kernel"   # its kernels: _nad_kernel0, _nad_kernel1...
OFFLOAD_RUNTIME = "_nad_gpu"  # the runtime object host code launches kernels and allocates with
OFFLOAD_LOCAL = "_nad_gpu_"   # names local to a kernel: _nad_gpu_start, _nad_gpu_part_s...
OFFLOAD_FIELD = "_nad_field_"  # a field of an aggregate argument: _nad_field_state__u



def adjoint(name: str) -> str:
    return ADJOINT + name


def shadow(name: str) -> str:
    return SHADOW + name


def tangent(name: str, direction: int, width: int) -> str:
    """Tangent of ``name`` in direction ``direction`` of ``width`` (``_nad_dot_x`` for one)."""
    return f"{TANGENT}_{name}" if width == 1 else f"{TANGENT}{direction}_{name}"


def forward_name(function_name: str, signature_code: str) -> str:
    """Name of a forward-mode variant, e.g. ``f__fwd_dc_r`` (args dual/const, result dual)."""
    return f"{function_name}__fwd_{signature_code}"


def batch_name(function_name: str, signature_code: str) -> str:
    """Name of a batched variant, e.g. ``f__batch_0n1_o0`` (in_axes 0, None, 1; out_axes 0)."""
    return f"{function_name}__batch_{signature_code}"


def lane_array(name: str) -> str:
    """The lane array of varying scalar ``name`` in the inner batch layout."""
    return LANE_ARRAY + name


def staged(name: str) -> str:
    """The lane-major copy of a block of batched array ``name`` in the inner batch layout."""
    return STAGED + name


def tuple_element(name: str, path: tuple[int, ...]) -> str:
    """The variable holding element ``t[i][j]...`` of tuple variable ``name``, path ``(i, j...)``."""
    return f"{TUPLE_ELEMENT}{'_'.join(map(str, path))}_{name}"


def seed(position: int) -> str:
    """The seed of the ``position``-th differentiable element of a tuple result."""
    return f"{SEED}{position}"


def reverse_name(function_name: str, signature_code: str) -> str:
    """Name of a reverse-mode variant, e.g. ``f__rev_ac_r`` (args active/const, result active)."""
    return f"{function_name}__rev_{signature_code}"


def custom_reverse_name(function_name: str, signature_code: str) -> str:
    """Name of a reverse variant that calls a declared rule (nbautodiff.frontend.declarations), ``f__custom_a_r``."""
    return f"{function_name}__custom_{signature_code}"


def custom_forward_name(function_name: str, signature_code: str) -> str:
    """Name of a forward variant that calls a declared tangent rule, ``f__custom_fwd_d_r``."""
    return f"{function_name}__custom_fwd_{signature_code}"


def unused(name: str, is_taken) -> str:
    """``name``, or the first of ``name_2``, ``name_3``... for which ``is_taken`` is false."""
    candidate, suffix = name, 1
    while is_taken(candidate):
        suffix += 1
        candidate = f"{name}_{suffix}"
    return candidate


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED)


def is_derivative_name(function_name: str) -> bool:
    """Whether a generated function is a derivative (reverse, forward or custom-rule variant)."""
    return any(marker in function_name for marker in ("__rev_", "__fwd_", "__custom_"))


def next_level(name: str) -> str:
    """A generated name renamed for generated code that is differentiated again:
    ``_nad_t1`` -> ``_nad1_t1``. The renamed names never start with ``_nad_``, so the names of
    the new derivative cannot clash with them, at any order."""
    return f"{RESERVED}1{name[len(RESERVED):]}"
