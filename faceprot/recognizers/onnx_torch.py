"""Load an ONNX face-recognition model as a differentiable PyTorch module.

Attacks and cloaks need gradients of an embedding with respect to the face, and onnxruntime gives
none. :func:`onnx_to_torch` turns the graph into an :class:`OnnxModule` that runs the same nodes
with torch operations, so ``embedding.backward()`` reaches the input. It covers the operators of the
recognisers faceprot uses: MobileFaceNet (``../shared``) and insightface IResNet ArcFace graphs
(``arcface.onnx`` of Arc2Face, antelopev2's ``glintr100.onnx``). Anything else is refused at load
time with :class:`NotImplementedError`, never approximated.

Batch rule
----------
Face recognisers are often exported with a fixed batch of 1 (MobileFaceNet's ``input0`` is
``[1, 3, 112, 112]`` and ends in ``Reshape(x, [1, -1])``). Run on a batch of B as it stands, such a
graph would be wrong (that Reshape would fold the batch into one row). Rather than guess which ``1``
in which constant was the batch, :class:`OnnxModule` keeps the export-time meaning of every node:

* if the first graph input's leading dimension is a fixed number N0 (the export batch) and the
  runtime batch B differs from it, the inputs whose leading dimension is N0 are split into B / N0
  groups of N0 samples, the graph runs once per group **vectorised** with :func:`torch.func.vmap`
  (one batched convolution for all groups, not a Python loop), and each output's group axis is
  merged back into its leading N0 axis: ``[B / N0, N0, ...] -> [B, ...]``;
* otherwise (dynamic batch, or B == N0) the graph runs as it is.

So ``Reshape(x, [1, -1])``, ``Flatten``, ``Squeeze`` or ``Concat`` over axis 0 all see exactly the
shapes they saw at export, and a batch of B gives the same numbers as B single runs.

Example:
    >>> module = onnx_to_torch("MobileFaceNet.onnx")  # doctest: +SKIP
    >>> module(torch.rand(9, 3, 112, 112)).shape  # doctest: +SKIP
    torch.Size([9, 128])
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

__all__ = ["OnnxModule", "onnx_to_torch", "SUPPORTED_OPS"]

# ONNX element type -> torch dtype, for Cast.
_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}


class _Node:
    """One ONNX node, with its attributes decoded once at load time."""

    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "opset")

    def __init__(self, node: onnx.NodeProto, opset: int) -> None:
        self.op = node.op_type
        self.name = node.name or f"{node.op_type}->{','.join(node.output)}"
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.opset = opset


# --------------------------------------------------------------------------------------------
# Helpers shared by several operators
# --------------------------------------------------------------------------------------------


def _ints(t: Tensor | None) -> list[int] | None:
    """A 1-D int tensor (shape, axes, pads) as Python ints; these are graph constants or shapes."""
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _attr_or_input(node: _Node, attr: str, inputs: list, index: int, since: int) -> list[int] | None:
    """``axes``/``pads``/... moved from an attribute to an input at opset ``since``."""
    if node.opset >= since:
        return _ints(inputs[index]) if len(inputs) > index else None
    got = node.attrs.get(attr)
    return None if got is None else list(got)


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def _torch_pad(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX ``[b1, b2, ..., e1, e2, ...]`` (first axis first) -> F.pad's last-axis-first pairs."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [b, e]
    return out


def _spatial_pads(node: _Node, x: Tensor, kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """Begin and end padding of each spatial axis, from ``pads`` or ``auto_pad``."""
    n = len(kernel)
    auto = node.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            # SAME_UPPER puts the odd extra pixel at the end, SAME_LOWER at the beginning.
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin, end
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(node.attrs.get("pads", [0] * (2 * n)))
    return pads[:n], pads[n:]


def _unsupported(node: _Node, why: str) -> NotImplementedError:
    return NotImplementedError(f"ONNX {node.op} node {node.name!r}: {why}")


# --------------------------------------------------------------------------------------------
# Operators. Each takes (node, inputs) and returns one tensor or a tuple (one per node output);
# an absent optional input is None. They are written with out-of-place torch ops only, so that
# they work under torch.func.vmap (the batch rule) and under autograd.
# --------------------------------------------------------------------------------------------


def _conv(node: _Node, inputs: list) -> Tensor:
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    n = w.dim() - 2
    if n not in (1, 2, 3):
        raise _unsupported(node, f"{n}-D convolution")
    kernel = list(node.attrs.get("kernel_shape", w.shape[2:]))
    strides = list(node.attrs.get("strides", [1] * n))
    dilations = list(node.attrs.get("dilations", [1] * n))
    begin, end = _spatial_pads(node, x, kernel, strides, dilations)
    if begin == end:
        padding = begin
    else:  # torch's conv only pads symmetrically: pad explicitly first
        x = F.pad(x, _torch_pad(begin, end))
        padding = [0] * n
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    return conv(x, w, b, strides, padding, dilations, node.attrs.get("group", 1))


def _batch_norm(node: _Node, inputs: list) -> Tensor:
    x, scale, bias, mean, var = inputs[:5]
    if node.attrs.get("training_mode", 0):
        raise _unsupported(node, "training_mode=1 (only inference batch-norm is supported)")
    if node.attrs.get("spatial", 1) == 0:
        raise _unsupported(node, "spatial=0")
    if len([o for o in node.outputs if o]) > 1:
        raise _unsupported(node, "running-statistics outputs (a training graph)")
    eps = node.attrs.get("epsilon", 1e-5)
    # Parameters are per channel (axis 1); [C] -> [C, 1, ...] broadcasts over [N, C, *spatial]
    # and over the [N, C] features of the 1-D BN after insightface's last Gemm alike.
    shape = [-1] + [1] * (x.dim() - 2)
    inv = (scale / torch.sqrt(var + eps)).reshape(shape)
    return (x - mean.reshape(shape)) * inv + bias.reshape(shape)


def _prelu(node: _Node, inputs: list) -> Tensor:
    x, slope = inputs
    # ONNX broadcasts the slope to x (insightface stores it as [C, 1, 1]); F.prelu would not.
    return torch.where(x >= 0, x, x * slope)


def _clip(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    # Opset >= 11: optional inputs; before: attributes. Constant bounds given as inputs are moved
    # to the attributes at load time (OnnxModule._fold_clip_bounds), so both forms end up here.
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else node.attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else node.attrs.get("max")
    if lo is None and hi is None:
        return x
    return torch.clamp(x, min=lo, max=hi)


def _div(node: _Node, inputs: list) -> Tensor:
    a, b = inputs
    if a.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")  # integer Div truncates, as in C


def _pow(node: _Node, inputs: list) -> Tensor:
    return torch.pow(inputs[0], inputs[1]).to(inputs[0].dtype)  # the result keeps the base's type


def _flatten(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    axis = _axis(node.attrs.get("axis", 1), x.dim())
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _gemm(node: _Node, inputs: list) -> Tensor:
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if node.attrs.get("transA", 0):
        a = a.t()
    if node.attrs.get("transB", 0):
        b = b.t()
    y = a @ b
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = alpha * y
    if c is not None:
        y = y + (c if beta == 1.0 else beta * c)
    return y


def _dropout(node: _Node, inputs: list) -> Tensor | tuple[Tensor, Tensor]:
    x = inputs[0]  # inference: the identity; the optional mask output is all ones (nothing dropped)
    if len(node.outputs) > 1 and node.outputs[1]:
        return x, torch.ones_like(x, dtype=torch.bool)
    return x


def _constant(node: _Node, inputs: list) -> Tensor:
    a = node.attrs
    if "value" in a:
        return _tensor_from_proto(a["value"])
    if "value_float" in a:
        return torch.tensor(a["value_float"], dtype=torch.float32)
    if "value_floats" in a:
        return torch.tensor(list(a["value_floats"]), dtype=torch.float32)
    if "value_int" in a:
        return torch.tensor(a["value_int"], dtype=torch.int64)
    if "value_ints" in a:
        return torch.tensor(list(a["value_ints"]), dtype=torch.int64)
    raise _unsupported(node, f"value kind {sorted(a)}")


def _shape(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    dims = list(x.shape)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", len(dims))
    return torch.tensor(dims[start:end], dtype=torch.int64, device=x.device)


def _gather(node: _Node, inputs: list) -> Tensor:
    x, idx = inputs
    axis = _axis(node.attrs.get("axis", 0), x.dim())
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)  # negative indices count from the end
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape((*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]))  # () for a scalar


def _unsqueeze(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    axes = _attr_or_input(node, "axes", inputs, 1, since=13)
    rank = x.dim() + len(axes)
    for a in sorted(_axis(a, rank) for a in axes):  # ascending, so each index is final
        x = x.unsqueeze(a)
    return x


def _squeeze(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    axes = _attr_or_input(node, "axes", inputs, 1, since=13)
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    axes = {_axis(a, x.dim()) for a in axes}
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


def _concat(node: _Node, inputs: list) -> Tensor:
    return torch.cat([t for t in inputs if t is not None], dim=node.attrs["axis"])


def _slice(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    if node.opset >= 10:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 else None
        steps = _ints(inputs[4]) if len(inputs) > 4 else None
    else:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes, steps = node.attrs.get("axes"), None
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.dim()) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    for axis, start, end, step in zip(axes, starts, ends, steps):
        size = x.shape[axis]
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
            index = [slice(None)] * axis + [slice(start, end, step)]
            x = x[tuple(index)]
        elif step < 0:  # torch slicing has no negative step: gather the indices instead
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
            idx = torch.arange(start, end, step, device=x.device)
            x = torch.index_select(x, axis, idx)
        else:
            raise _unsupported(node, "step 0")
    return x


def _cast(node: _Node, inputs: list) -> Tensor:
    to = node.attrs["to"]
    if to not in _DTYPES:
        raise _unsupported(node, f"cast to ONNX type {to}")
    return inputs[0].to(_DTYPES[to])


def _reshape(node: _Node, inputs: list) -> Tensor:
    x, shape = inputs[0], _ints(inputs[1])
    if not node.attrs.get("allowzero", 0):  # 0 copies the input's dimension at that position
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _transpose(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    perm = node.attrs.get("perm", list(reversed(range(x.dim()))))
    return x.permute(*perm)


def _global_average_pool(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _pool_geometry(node: _Node, x: Tensor) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    kernel = list(node.attrs["kernel_shape"])
    n = len(kernel)
    strides = list(node.attrs.get("strides", [1] * n))
    dilations = list(node.attrs.get("dilations", [1] * n))
    begin, end = _spatial_pads(node, x, kernel, strides, dilations)
    return kernel, strides, dilations, begin, end


def _max_pool(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _unsupported(node, "the Indices output")
    kernel, strides, dilations, begin, end = _pool_geometry(node, x)
    n = len(kernel)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    if begin == end and all(2 * p <= k for p, k in zip(begin, kernel)):
        padding = begin
    else:  # torch pads symmetrically and at most half a kernel: pad with -inf ourselves
        x = F.pad(x, _torch_pad(begin, end), value=float("-inf"))
        padding = [0] * n
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
    return pool(x, kernel, strides, padding, dilations, ceil_mode=ceil)


def _average_pool(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    kernel, strides, dilations, begin, end = _pool_geometry(node, x)
    n = len(kernel)
    if any(d != 1 for d in dilations):
        raise _unsupported(node, "dilations other than 1")
    ceil = bool(node.attrs.get("ceil_mode", 0))
    include = bool(node.attrs.get("count_include_pad", 0))
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    if begin == end and all(2 * p <= k for p, k in zip(begin, kernel)):
        return pool(x, kernel, strides, begin, ceil_mode=ceil, count_include_pad=include)
    if ceil:
        raise _unsupported(node, "asymmetric pads with ceil_mode=1")
    # Asymmetric pads: sum over the zero-padded input divided by the number of counted cells.
    pad = _torch_pad(begin, end)
    total = pool(F.pad(x, pad), kernel, strides, 0) * math.prod(kernel)
    if include:
        return total / math.prod(kernel)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    count = pool(F.pad(ones, pad), kernel, strides, 0) * math.prod(kernel)
    return total / count


def _reflect_index(i: Tensor, n: int) -> Tensor:
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _pad(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if node.opset >= 11:
        pads = _ints(inputs[1])
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        value = 0.0 if value is None else float(value.reshape(-1)[0])
        axes = _ints(inputs[3]) if len(inputs) > 3 else None
    else:
        pads, value, axes = list(node.attrs["pads"]), node.attrs.get("value", 0.0), None
    axes = list(range(x.dim())) if axes is None else [_axis(a, x.dim()) for a in axes]
    k = len(axes)
    begin = [0] * x.dim()
    end = [0] * x.dim()
    for j, a in enumerate(axes):
        begin[a], end[a] = pads[j], pads[k + j]
    if mode == "constant":  # F.pad's constant mode takes any axis and negative pads (crops)
        return F.pad(x, _torch_pad(begin, end), value=value)
    if mode not in ("reflect", "edge", "wrap"):
        raise _unsupported(node, f"mode {mode!r}")
    # Other modes: gather along each padded axis with a source index per output position. This
    # works on any axis, unlike F.pad's reflect/replicate, and stays differentiable.
    for a in range(x.dim()):
        if begin[a] == 0 and end[a] == 0:
            continue
        n = x.shape[a]
        i = torch.arange(-begin[a], n + end[a], device=x.device)
        if mode == "reflect":
            i = _reflect_index(i, n)
        elif mode == "edge":
            i = i.clamp(0, n - 1)
        else:
            i = torch.remainder(i, n)
        x = torch.index_select(x, a, i)
    return x


def _reduce_axes(node: _Node, inputs: list, since: int, x: Tensor) -> tuple[int, ...] | None:
    axes = _attr_or_input(node, "axes", inputs, 1, since=since)
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.dim()))
    return tuple(_axis(a, x.dim()) for a in axes)


def _reduce(since: int, fn: Callable[[Tensor, tuple[int, ...], bool], Tensor]):
    def op(node: _Node, inputs: list) -> Tensor:
        x = inputs[0]
        axes = _reduce_axes(node, inputs, since, x)
        if axes is None:
            return x
        return fn(x, axes, bool(node.attrs.get("keepdims", 1)))

    return op


def _softmax(node: _Node, inputs: list) -> Tensor:
    x = inputs[0]
    if node.opset >= 13:
        return torch.softmax(x, dim=node.attrs.get("axis", -1))
    # Before opset 13 the input is coerced to 2-D at `axis` and normalised over the second part.
    axis = _axis(node.attrs.get("axis", 1), x.dim())
    flat = x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
    return torch.softmax(flat, dim=1).reshape(x.shape)


def _elementwise(fn: Callable[..., Tensor]):
    return lambda node, inputs: fn(*inputs)


_OPS: dict[str, Callable[[_Node, list], Tensor | tuple[Tensor, ...]]] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "PRelu": _prelu,
    "Clip": _clip,
    "Add": _elementwise(torch.add),
    "Sub": _elementwise(torch.sub),
    "Mul": _elementwise(torch.mul),
    "Div": _div,
    "Pow": _pow,
    "Sqrt": _elementwise(torch.sqrt),
    "Relu": _elementwise(torch.relu),
    "LeakyRelu": lambda node, inputs: F.leaky_relu(inputs[0], node.attrs.get("alpha", 0.01)),
    "Sigmoid": _elementwise(torch.sigmoid),
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": _elementwise(torch.matmul),
    "Identity": _elementwise(lambda x: x),
    "Dropout": _dropout,
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Cast": _cast,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "GlobalAveragePool": _global_average_pool,
    "AveragePool": _average_pool,
    "MaxPool": _max_pool,
    "Pad": _pad,
    "ReduceMean": _reduce(18, lambda x, axes, keep: x.mean(dim=axes, keepdim=keep)),
    "ReduceL2": _reduce(18, lambda x, axes, keep: torch.linalg.vector_norm(x, 2, dim=axes, keepdim=keep)),
}

SUPPORTED_OPS = frozenset(_OPS)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def _tensor_from_proto(t: onnx.TensorProto) -> Tensor:
    """An initializer or Constant value as a torch tensor; floats become float32, as in the graphs
    faceprot loads, so that ``module.double()`` or ``.half()`` converts the whole model at once."""
    if t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data:
        raise ValueError(
            f"Tensor {t.name!r} keeps its data in an external file that was not loaded: pass the "
            "model's path to onnx_to_torch (or load it with onnx.load, which reads the external data)."
        )
    arr = np.array(numpy_helper.to_array(t))  # a writable copy: torch.from_numpy wants one
    out = torch.from_numpy(arr)
    if out.is_floating_point():
        out = out.float()
    return out


def _leading_dim(info: onnx.ValueInfoProto) -> int | None:
    dims = info.type.tensor_type.shape.dim
    return dims[0].dim_value if len(dims) and dims[0].HasField("dim_value") else None


def _topological(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where every input is computed before use (ONNX requires it; check it)."""
    produced = {o: i for i, n in enumerate(nodes) for o in n.output}
    order: list[onnx.NodeProto] = []
    state: dict[int, int] = {}  # 1 = visiting, 2 = done

    def visit(i: int) -> None:
        stack = [(i, False)]
        while stack:
            j, expanded = stack.pop()
            if expanded:
                state[j] = 2
                order.append(nodes[j])
                continue
            if state.get(j) == 2:
                continue
            if state.get(j) == 1:
                raise ValueError(f"the ONNX graph has a cycle through node {nodes[j].name!r}")
            state[j] = 1
            stack.append((j, True))
            for name in nodes[j].input:
                if name and name not in known:
                    if name not in produced:
                        raise ValueError(f"node {nodes[j].name!r} reads {name!r}, which nothing produces")
                    if state.get(produced[name]) != 2:
                        stack.append((produced[name], False))

    for i in range(len(nodes)):
        if state.get(i) != 2:
            visit(i)
    return order


# Own, not onnx2torch (needs torchvision, breaks fixed-batch graphs): tests/test_onnx_torch.py::test_converter_runs_without_torchvision
class OnnxModule(nn.Module):
    """An ONNX graph run with torch operations, differentiable with respect to its inputs.

    Float initializers are ``nn.Parameter`` (float32); integer initializers and ``Constant`` node
    values are buffers. When only input gradients are wanted (an attack, a cloak), call
    ``requires_grad_(False)`` so that backward does not also fill weight gradients. ``forward``
    runs the nodes in topological order and frees each value after its last use. A graph exported
    with a fixed batch N0 accepts any batch that is a multiple of N0 (module docstring, "Batch rule").

    Args:
        model: the ONNX model, with any external data already loaded.
        name: what error messages call the model (its file name, by default its graph name).

    Shape:
        - Input: the graph's inputs with any leading batch B, preprocessed as the model expects,
          e.g. ``(B, 3, 112, 112)`` RGB in [0, 1] then ImageNet mean/std for MobileFaceNet.
        - Output: the graph's output (e.g. ``(B, 128)`` or ``(B, 512)`` embeddings), or a tuple when
          the graph has several.

    Raises:
        NotImplementedError: an operator (or an attribute value) this converter does not support.
    """

    def __init__(self, model: onnx.ModelProto, name: str | None = None) -> None:
        super().__init__()
        graph = model.graph
        self.model_name = name or graph.name or "<onnx model>"
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.opset = opset

        unsupported = sorted({
            f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
            for n in graph.node
            if n.domain not in ("", "ai.onnx") or n.op_type not in _OPS
        })
        if unsupported:
            raise NotImplementedError(
                f"ONNX model {self.model_name!r} uses operator(s) that onnx_to_torch does not support: "
                f"{', '.join(unsupported)}. Supported: {', '.join(sorted(_OPS))}."
            )

        # ONNX names hold '.', '/' and ':', which module attribute names may not: map them.
        self._slot: dict[str, str] = {}
        used: set[str] = set()

        def slot(onnx_name: str) -> str:
            base = "v_" + re.sub(r"\W", "_", onnx_name)
            s, k = base, 1
            while s in used:
                s, k = f"{base}_{k}", k + 1
            used.add(s)
            self._slot[onnx_name] = s
            return s

        for t in graph.initializer:
            value = _tensor_from_proto(t)
            if value.is_floating_point():
                self.register_parameter(slot(t.name), nn.Parameter(value))
            else:
                self.register_buffer(slot(t.name), value)

        init_names = {t.name for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in init_names]
        self.output_names = [o.name for o in graph.output]
        # Export-time leading dimension of each input and output (None when symbolic or unknown).
        self._input_batch = [_leading_dim(i) for i in graph.input if i.name not in init_names]
        self._output_batch = [_leading_dim(o) for o in graph.output]

        # Constant nodes are evaluated once here; the rest run in forward.
        self._nodes: list[_Node] = []
        for proto in _topological(list(graph.node), init_names | set(self.input_names)):
            node = _Node(proto, opset)
            if node.op == "Constant":
                self.register_buffer(slot(node.outputs[0]), _constant(node, []))
            else:
                self._nodes.append(node)

        self._fold_clip_bounds()

        # Free each intermediate value after the last node that reads it (R100 activations are big).
        last_use: dict[str, int] = {}
        for k, node in enumerate(self._nodes):
            for name in node.inputs:
                last_use[name] = k
        keep = set(self.output_names) | set(self._slot)
        self._free_after: list[list[str]] = [[] for _ in self._nodes]
        for name, k in last_use.items():
            if name not in keep:
                self._free_after[k].append(name)

    def op_types(self) -> list[str]:
        """The operator of each node that ``forward`` runs, in order (Constant nodes were folded).

        E.g. insightface graphs that normalise their own input start with ``Sub``/``Mul``.
        """
        return [node.op for node in self._nodes]

    def _fold_clip_bounds(self) -> None:
        """Turn constant Clip bounds (MobileFaceNet's ReLU6) into Python floats.

        torch.clamp with scalar bounds is about 4x faster than with 0-d tensor bounds on the CPU
        (0.28 vs 1.25 ms on (9, 64, 56, 56), 1 thread), and Clip is a fifth of MobileFaceNet's time.
        """
        for node in self._nodes:
            if node.op != "Clip":
                continue
            for pos, key in ((1, "min"), (2, "max")):
                if len(node.inputs) > pos and node.inputs[pos] in self._slot:
                    bound = getattr(self, self._slot[node.inputs[pos]])
                    if bound.numel() == 1:
                        node.attrs[key] = float(bound.reshape(()))
                        node.inputs[pos] = ""

    def _run(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Run the graph once on inputs of the export-time shapes (or a dynamic batch)."""
        values: dict[str, Tensor | None] = {"": None}
        for onnx_name, attr in self._slot.items():
            values[onnx_name] = getattr(self, attr)
        values.update(zip(self.input_names, inputs))
        for node, free in zip(self._nodes, self._free_after):
            try:
                out = _OPS[node.op](node, [values[i] for i in node.inputs])
            except NotImplementedError as exc:  # an attribute value found unsupported at run time
                raise NotImplementedError(f"ONNX model {self.model_name!r}: {exc}") from None
            if isinstance(out, Tensor):
                out = (out,)
            for name, v in zip(node.outputs, out):
                if name:
                    values[name] = v
            for name in free:
                values.pop(name, None)
        return tuple(values[o] for o in self.output_names)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Run the graph on a batch.

        Args:
            inputs: one tensor per graph input, in the graph's order, e.g. ``(B, 3, 112, 112)``.

        Returns:
            The graph output, e.g. ``(B, D)`` embeddings; a tuple when the graph has several outputs.
        """
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"{self.model_name} takes {len(self.input_names)} input(s) "
                f"({', '.join(self.input_names)}), got {len(inputs)}"
            )
        n0 = self._input_batch[0] if self._input_batch else None
        b = inputs[0].shape[0] if inputs and inputs[0].dim() else None
        if n0 is None or b is None or b == n0:
            outs = self._run(*inputs)
        else:
            outs = self._run_grouped(inputs, n0, b)
        return outs[0] if len(outs) == 1 else outs

    def _run_grouped(self, inputs: Sequence[Tensor], n0: int, b: int) -> tuple[Tensor, ...]:
        """Batch rule: vmap the export-batch graph over B / N0 groups of N0 samples."""
        if b % n0:
            raise ValueError(
                f"{self.model_name} was exported with a fixed batch of {n0}; "
                f"a batch of {b} is not a multiple of it"
            )
        groups = b // n0
        args, dims = [], []
        for x, nb in zip(inputs, self._input_batch):
            if nb == n0 and x.dim() and x.shape[0] == b:  # this input carries the batch
                args.append(x.reshape(groups, n0, *x.shape[1:]))
                dims.append(0)
            else:
                args.append(x)
                dims.append(None)
        outs = torch.func.vmap(self._run, in_dims=tuple(dims))(*args)
        # [groups, N0, ...] -> [B, ...] for outputs declared with the export batch as their first
        # axis (or undeclared and of that size); any other output keeps its group axis in front.
        merged = []
        for o, declared in zip(outs, self._output_batch):
            batched = declared == n0 if declared is not None else o.dim() >= 2 and o.shape[1] == n0
            merged.append(o.reshape(groups * n0, *o.shape[2:]) if batched else o)
        return tuple(merged)

    def extra_repr(self) -> str:
        return f"model={self.model_name!r}, opset={self.opset}, nodes={len(self._nodes)}"


def onnx_to_torch(model: str | Path | onnx.ModelProto) -> OnnxModule:
    """Load an ONNX model as a differentiable :class:`OnnxModule`.

    Args:
        model: a path to a ``.onnx`` file (external data such as ``MobileFaceNet.onnx.data`` is
            read from beside it) or a loaded ``onnx.ModelProto``.

    Returns:
        The module, in eval mode, on the CPU, float32 weights.

    Raises:
        NotImplementedError: the graph uses an operator that is not supported; the message names
            the operator and the model.
    """
    if isinstance(model, onnx.ModelProto):
        module = OnnxModule(model)
    else:
        path = Path(model)
        module = OnnxModule(onnx.load(str(path), load_external_data=True), name=path.name)
    return module.eval()
