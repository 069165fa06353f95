"""Arrays built inline in generated kernels and helpers: views, copies in C order and new
arrays, as intrinsics (their LLVM is written here). Numba's own ``reshape``,
``transpose(axes)``, ``broadcast_to``, ``ascontiguousarray`` and ``empty`` handle any
argument and check it at run time; typing and lowering them costs 3-20 ms a call, and some
of their error paths compile Numba's string formatting into the kernel (seconds, once per
process). The generator knows shapes and layouts, so these skip the checks."""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed, impl_ret_new_ref
from numba.extending import intrinsic
from numba.np.arrayobj import (_as_layout_array, _empty_nd_impl, make_array, populate_array,
                               store_item)
from numba.np.numpy_support import from_dtype


@intrinsic
def _contiguous(typingctx, a):
    """``np.ascontiguousarray(a)``: ``a`` itself when its type is C-contiguous, else a copy
    in C order (or ``a`` when it turns out contiguous at run time)."""
    if not isinstance(a, types.Array):
        return None
    same = a.layout == "C" and a.ndim > 0
    rty = a if same else a.copy(layout="C", ndim=max(a.ndim, 1), readonly=False)

    def codegen(context, builder, sig, args):
        if same:
            return impl_ret_borrowed(context, builder, sig.return_type, args[0])
        return _as_layout_array(context, builder, sig, args, output_layout="C")
    return rty(a), codegen


@intrinsic
def _empty(typingctx, shape, dtype):
    """``np.empty(shape, dtype)``, C-contiguous, for a tuple of non-negative integers and a
    dtype (a string literal such as ``'float64'``, a NumPy scalar type or an array's
    ``dtype``)."""
    if isinstance(dtype, types.StringLiteral):
        dt = from_dtype(np.dtype(dtype.literal_value))
    elif isinstance(dtype, types.NumberClass):
        dt = dtype.instance_type
    elif isinstance(dtype, types.DType):
        dt = dtype.dtype
    else:
        return None
    ndim = _rank(shape)
    if ndim is None:
        return None
    rty = types.Array(dt, ndim, "C")

    def codegen(context, builder, sig, args):
        dims = _dims(context, builder, sig.args[0], args[0])
        ary = _empty_nd_impl(context, builder, sig.return_type, dims)
        return impl_ret_new_ref(context, builder, sig.return_type, ary._getvalue())
    return rty(shape, dtype), codegen


def _rank(shape):
    """The rank of an array made with the Numba type ``shape`` (an integer or a tuple of
    integers), else None."""
    if isinstance(shape, types.Integer):
        return 1
    if isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape):
        return len(shape)
    return None


def _dims(context, builder, sty, value):
    """LLVM intp values of the dimensions in ``value``, of Numba type ``sty``."""
    if isinstance(sty, types.Integer):
        return [context.cast(builder, value, sty, types.intp)]
    return [context.cast(builder, v, t, types.intp) for v, t in
            zip(cgutils.unpack_tuple(builder, value, len(sty)), sty)]


@intrinsic
def _full(typingctx, shape, value):
    """``np.full(shape, value)`` for a scalar ``value``: a new C-contiguous array of its
    type."""
    if not isinstance(value, (types.Number, types.Boolean)):
        return None
    ndim = _rank(shape)
    if ndim is None:
        return None
    rty = types.Array(types.unliteral(value), ndim, "C")

    def codegen(context, builder, sig, args):
        rty = sig.return_type
        ary = _empty_nd_impl(context, builder, rty, _dims(context, builder, sig.args[0], args[0]))
        v = context.cast(builder, args[1], sig.args[1], rty.dtype)
        with cgutils.for_range(builder, ary.nitems) as loop:
            store_item(context, builder, rty, v, cgutils.gep_inbounds(builder, ary.data, loop.index))
        return impl_ret_new_ref(context, builder, rty, ary._getvalue())
    return rty(shape, value), codegen


@intrinsic
def _local(typingctx, n, value):
    """``np.full(n, value)`` for a literal ``n``, in the kernel's stack frame: for partial
    results that never leave the kernel. LLVM knows such memory is no other array's, so it
    keeps the elements in registers across a loop that also stores into arrays (a heap
    array might alias them: each element was then loaded and stored back every iteration,
    and an `exp`-and-sum loop ran 1.3-1.7x slower). The array has no meminfo: it must not be
    returned or kept. It starts on a 64-byte boundary, so a vector of its partial results
    is one cache line: at the stack's own 16-byte alignment, where the frame fell depended
    on the process, and in most processes logsumexp's value_and_grad at n = 1e5 took 210 µs
    instead of 145 µs."""
    if not isinstance(n, types.IntegerLiteral) or \
            not isinstance(value, (types.Number, types.Boolean)):
        return None
    count = n.literal_value
    rty = types.Array(types.unliteral(value), 1, "C")

    def codegen(context, builder, sig, args):
        dty = context.get_data_type(rty.dtype)
        slot = cgutils.alloca_once(builder, ir.ArrayType(dty, count))
        slot.align = 64         # a cache line: see the docstring
        data = builder.bitcast(slot, dty.as_pointer())
        v = context.cast(builder, args[1], sig.args[1], rty.dtype)
        for k in range(count):
            builder.store(v, cgutils.gep_inbounds(builder, data, k))
        ary = make_array(rty)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(dty))
        populate_array(ary, data=data, shape=[context.get_constant(types.intp, count)],
                       strides=[itemsize], itemsize=itemsize, meminfo=None)
        return ary._getvalue()
    return rty(n, value), codegen


# Views of C-contiguous arrays, built inline. Numba's ``reshape`` costs about 20 ms of
# compile time per call (it handles any layout and checks sizes at run time); these cost
# about 4 ms, and kernels make many (every value that changes shape between a helper, a
# product and a loop nest).
def _c_view(context, builder, aty, rty, value, dims):
    """An array of type ``rty`` over ``value``'s data, meminfo and parent, with C strides
    for ``dims`` (LLVM values of intp)."""
    ary = make_array(aty)(context, builder, value)
    out = make_array(rty)(context, builder)
    strides, step = [None] * len(dims), ary.itemsize
    for k in range(len(dims) - 1, -1, -1):
        strides[k] = step
        step = builder.mul(step, dims[k])
    populate_array(out, data=ary.data, shape=dims, strides=strides, itemsize=ary.itemsize,
                   meminfo=ary.meminfo, parent=ary.parent)
    return impl_ret_borrowed(context, builder, rty, out._getvalue())


@intrinsic
def _shaped(typingctx, a, shape):
    """``a`` (C-contiguous, of ``shape``'s size: the generator knows both) seen with
    ``shape``, a tuple of integers. Like ``a.reshape(shape)``, without run-time checks."""
    if not isinstance(a, types.Array) or a.layout != "C" or \
            not isinstance(shape, types.BaseTuple) or \
            not all(isinstance(t, types.Integer) for t in shape):
        return None

    def codegen(context, builder, sig, args):
        aty, sty = sig.args
        dims = [context.cast(builder, v, t, types.intp) for v, t in
                zip(cgutils.unpack_tuple(builder, args[1], len(sty)), sty)]
        return _c_view(context, builder, aty, sig.return_type, args[0], dims)
    return a.copy(ndim=len(shape), layout="C")(a, shape), codegen


@intrinsic
def _permuted(typingctx, a, perm):
    """``a.transpose(perm)`` for ``perm`` given as a string literal such as ``"2,0,1"``: a
    view. Numba's ``transpose`` with axes checks them at run time and formats its error
    message there, which compiles Numba's string machinery into the kernel (seconds, the
    first time in a process)."""
    if not isinstance(a, types.Array) or not isinstance(perm, types.StringLiteral):
        return None
    order = [int(k) for k in perm.literal_value.split(",")]
    if sorted(order) != list(range(a.ndim)):
        return None
    layout = a.layout if order == sorted(order) else "A"

    def codegen(context, builder, sig, args):
        aty, rty = sig.args[0], sig.return_type
        ary = make_array(aty)(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, ary.shape, aty.ndim)
        strides = cgutils.unpack_tuple(builder, ary.strides, aty.ndim)
        out = make_array(rty)(context, builder)
        populate_array(out, data=ary.data, shape=[shape[k] for k in order],
                       strides=[strides[k] for k in order], itemsize=ary.itemsize,
                       meminfo=ary.meminfo, parent=ary.parent)
        return impl_ret_borrowed(context, builder, rty, out._getvalue())
    return a.copy(layout=layout)(a, perm), codegen


@intrinsic
def _broadcast(typingctx, a, shape):
    """``np.broadcast_to(a, shape)`` for an ``a`` the generator knows broadcasts to
    ``shape`` (a tuple of integers): a read-only view, axes of length 1 and new leading
    axes with stride 0. Numba's version checks the shapes at run time, with an error path
    that costs about 0.2 s of compile per kernel."""
    if not isinstance(a, types.Array) or not isinstance(shape, types.BaseTuple) or \
            len(shape) < a.ndim or not all(isinstance(t, types.Integer) for t in shape):
        return None

    def codegen(context, builder, sig, args):
        aty, sty = sig.args
        rty = sig.return_type
        ary = make_array(aty)(context, builder, args[0])
        dims = [context.cast(builder, v, t, types.intp) for v, t in
                zip(cgutils.unpack_tuple(builder, args[1], len(sty)), sty)]
        own = cgutils.unpack_tuple(builder, ary.shape, aty.ndim)
        steps = cgutils.unpack_tuple(builder, ary.strides, aty.ndim)
        zero = context.get_constant(types.intp, 0)
        one = context.get_constant(types.intp, 1)
        lead = len(dims) - aty.ndim
        strides = [zero] * lead + [builder.select(builder.icmp_signed("==", n, one), zero, st)
                                   for n, st in zip(own, steps)]
        out = make_array(rty)(context, builder)
        populate_array(out, data=ary.data, shape=dims, strides=strides, itemsize=ary.itemsize,
                       meminfo=ary.meminfo, parent=ary.parent)
        return impl_ret_borrowed(context, builder, rty, out._getvalue())
    return a.copy(ndim=len(shape), layout="A", readonly=True)(a, shape), codegen


def _flat_copy(x):
    return _contiguous(x).reshape(x.size)


@intrinsic
def _flat(typingctx, a):
    """``a``'s elements as a C-contiguous vector: a view of a C-contiguous array, else a
    copy in C order."""
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, sig, args):
        aty, rty = sig.args[0], sig.return_type
        if aty.layout != "C":
            return context.compile_internal(builder, _flat_copy, sig, args)
        shape = cgutils.unpack_tuple(builder, make_array(aty)(context, builder,
                                                              args[0]).shape, aty.ndim)
        size = context.get_constant(types.intp, 1)
        for n in shape:
            size = builder.mul(size, n)
        return _c_view(context, builder, aty, rty, args[0], [size])
    return a.copy(ndim=1, layout="C")(a), codegen
