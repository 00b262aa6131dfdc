"""A numpy reference evaluator for Core ML ML programs, to check an export's numbers on Linux.

Core ML prediction runs only on macOS, but coremltools reads a saved .mlpackage back into a MIL
program (program proto plus weights) anywhere. `evaluate` runs that program op by op for the ops
our generators convert to; any other op raises UnsupportedOpError, so a check never passes
silently on something it did not compute.

Precision: every op computes in float32 from its inputs and stores its result in the dtype the
program declares for it (float16 in an fp16 program), so the rounding of every intermediate
tensor to fp16 is modelled. Rounding inside one op (fp16 accumulation in a convolution on some
Apple GPUs or the Neural Engine) is not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import coremltools as ct
import numpy as np
from coremltools.converters.mil.frontend.milproto.load import load as load_milproto
from coremltools.converters.mil.mil import Program, types


class UnsupportedOpError(Exception):
    """The program uses ops (or op options) this evaluator does not implement."""

    def __init__(self, ops: Iterable[str]) -> None:
        self.ops = sorted(set(ops))
        super().__init__("unknown op(s) " + ", ".join(self.ops))


def load_program(path: str | os.PathLike) -> Program:
    """The ML program of a saved .mlpackage with its weights, readable on any OS."""
    model = ct.models.MLModel(os.fspath(path), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path} is not an ML program (.mlpackage)")
    return load_milproto(spec, spec.specificationVersion, model.weights_dir)


# --- window arithmetic shared by conv and avg_pool -------------------------------------------


def _spatial_pads(
    pad_type: str,
    pad: Sequence[int] | None,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:
    """(before, after) padding per spatial axis for MIL's valid / custom / same / same_lower."""
    if pad_type == "valid":
        return [(0, 0)] * len(sizes)
    if pad_type == "custom":
        return [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(sizes))]
    if pad_type not in ("same", "same_lower"):
        raise UnsupportedOpError([f"pad_type={pad_type}"])
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if pad_type == "same" else (large, small))
    return pads


def _windows(
    x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """For each kernel offset (i, j): the (N, C, Ho, Wo) input pixels it meets."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    ho = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    wo = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, :, i * dh :: sh, j * dw :: sw][:, :, :ho, :wo]


def _pad_spatial(x: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    return np.pad(x, [(0, 0), (0, 0), *pads])


def _require_2d(op: str, x: np.ndarray) -> None:
    if x.ndim != 4:
        raise UnsupportedOpError([f"{op}(rank {x.ndim})"])


# --- the ops --------------------------------------------------------------------------------


def _conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    pad_type: str = "valid",
    pad: Sequence[int] | None = None,
    dilations: Sequence[int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    _require_2d("conv", x)
    kernel = weight.shape[2:]
    x = _pad_spatial(x, _spatial_pads(pad_type, pad, x.shape[2:], kernel, strides, dilations))
    outputs = []
    for xg, wg in zip(np.split(x, groups, axis=1), np.split(weight, groups, axis=0), strict=True):
        acc = None
        for i, j, patch in _windows(xg, kernel, strides, dilations):
            term = np.tensordot(wg[:, :, i, j], patch, axes=([1], [1]))  # (Cout, N, Ho, Wo)
            acc = term if acc is None else acc + term
        outputs.append(acc.transpose(1, 0, 2, 3))
    out = np.concatenate(outputs, axis=1)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def _avg_pool(
    x: np.ndarray,
    kernel_sizes: Sequence[int],
    strides: Sequence[int],
    pad_type: str,
    pad: Sequence[int] | None = None,
    exclude_padding_from_average: bool = False,
    ceil_mode: bool = False,
) -> np.ndarray:
    _require_2d("avg_pool", x)
    if ceil_mode:
        raise UnsupportedOpError(["avg_pool(ceil_mode=True)"])
    ones = (1, 1)
    pads = _spatial_pads(pad_type, pad, x.shape[2:], kernel_sizes, strides, ones)
    total = sum(p for _, _, p in _windows(_pad_spatial(x, pads), kernel_sizes, strides, ones))
    if not exclude_padding_from_average:
        return total / (kernel_sizes[0] * kernel_sizes[1])
    inside = _pad_spatial(np.ones((1, 1, *x.shape[2:]), np.float32), pads)
    count = sum(p for _, _, p in _windows(inside, kernel_sizes, strides, ones))
    return total / count


def _upsample_nearest_neighbor(
    x: np.ndarray, scale_factor_height: float = 1, scale_factor_width: float = 1
) -> np.ndarray:
    factors = (float(scale_factor_height), float(scale_factor_width))
    if not all(f.is_integer() and f >= 1 for f in factors):
        raise UnsupportedOpError([f"upsample_nearest_neighbor(scale {factors})"])
    return x.repeat(int(factors[0]), axis=-2).repeat(int(factors[1]), axis=-1)


def _concat(values: Sequence[np.ndarray], axis: int, interleave: bool = False) -> np.ndarray:
    if interleave:
        raise UnsupportedOpError(["concat(interleave=True)"])
    if values[0].ndim == 0:  # MIL concatenates scalars into a vector
        return np.stack(values)
    return np.concatenate(values, axis=int(axis))


def _channel_param(p: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over (N, C, *spatial)."""
    return np.asarray(p).reshape(-1, *([1] * (ndim - 2)))


def _batch_norm(
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    epsilon: float = 1e-5,
) -> np.ndarray:
    scale = 1.0 if gamma is None else _channel_param(gamma, x.ndim)
    shift = 0.0 if beta is None else _channel_param(beta, x.ndim)
    mean, variance = _channel_param(mean, x.ndim), _channel_param(variance, x.ndim)
    return (x - mean) / np.sqrt(variance + epsilon) * scale + shift


def _instance_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    epsilon: float = 1e-5,
) -> np.ndarray:
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    variance = x.var(axis=axes, keepdims=True)
    scale = 1.0 if gamma is None else _channel_param(gamma, x.ndim)
    shift = 0.0 if beta is None else _channel_param(beta, x.ndim)
    return (x - mean) / np.sqrt(variance + epsilon) * scale + shift


def _leaky_relu(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return np.where(x >= 0, x, x * alpha)


_NUMPY_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def _pad(
    x: np.ndarray, pad: Sequence[int], mode: str = "constant", constant_val: float = 0.0
) -> np.ndarray:
    if mode not in _NUMPY_PAD_MODES:
        raise UnsupportedOpError([f"pad(mode={mode})"])
    padded_axes = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - padded_axes)
    widths += [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(padded_axes)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    return np.pad(x, widths, mode=_NUMPY_PAD_MODES[mode])


def _slice_by_index(
    x: np.ndarray,
    begin: Sequence[int],
    end: Sequence[int],
    stride: Sequence[int] | None = None,
    begin_mask: Sequence[bool] | None = None,
    end_mask: Sequence[bool] | None = None,
    squeeze_mask: Sequence[bool] | None = None,
) -> np.ndarray:
    rank = x.ndim
    stride = [1] * rank if stride is None else stride
    begin_mask = [False] * rank if begin_mask is None else begin_mask
    end_mask = [False] * rank if end_mask is None else end_mask
    squeeze_mask = [False] * rank if squeeze_mask is None else squeeze_mask
    index: list[slice | int] = []
    for axis in range(rank):
        if squeeze_mask[axis]:
            index.append(int(begin[axis]))
            continue
        start = None if begin_mask[axis] else int(begin[axis])
        stop = None if end_mask[axis] else int(end[axis])
        index.append(slice(start, stop, int(stride[axis])))
    return x[tuple(index)]


def _slice_by_size(x: np.ndarray, begin: Sequence[int], size: Sequence[int]) -> np.ndarray:
    index = []
    for b, s, dim in zip(begin, size, x.shape, strict=True):
        b = int(b) % dim if dim else 0
        index.append(slice(b, None if s == -1 else b + int(s)))
    return x[tuple(index)]


def _gather(
    x: np.ndarray,
    indices: np.ndarray,
    axis: int = 0,
    batch_dims: int = 0,
    validate_indices: bool = False,
) -> np.ndarray:
    if batch_dims:
        raise UnsupportedOpError([f"gather(batch_dims={batch_dims})"])
    return np.take(x, np.asarray(indices, dtype=np.int64), axis=int(axis))


def _fill(shape: Sequence[int], value: float = 0.0) -> np.ndarray:
    return np.full(tuple(int(s) for s in shape), value)


# The output var's declared dtype performs the conversion (see _store), so cast is the identity.
def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """MIL's linear: x @ weight^T + bias, weight (out, in); a style mix in conditional norms."""
    y = x @ weight.T
    return y if bias is None else y + bias


OPS: dict[str, Callable[..., np.ndarray]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "real_div": lambda x, y: x / y,
    "clip": lambda x, alpha, beta: np.clip(x, alpha, beta),
    "cast": lambda x, dtype: x,
    "shape": lambda x: np.array(x.shape),
    "leaky_relu": _leaky_relu,
    "conv": _conv,
    "avg_pool": _avg_pool,
    "upsample_nearest_neighbor": _upsample_nearest_neighbor,
    "concat": _concat,
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "pad": _pad,
    "slice_by_index": _slice_by_index,
    "slice_by_size": _slice_by_size,
    "gather": _gather,
    "fill": _fill,
    "linear": _linear,
    # Axes count in the result's rank, as numpy's do.
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
}


def unsupported_ops(program: Program, function: str = "main") -> list[str]:
    """Op types in the program that `evaluate` cannot compute."""
    ops = program.functions[function].operations
    return sorted({op.op_type for op in ops if op.op_type != "const" and op.op_type not in OPS})


def _compute(value):
    """fp16 tensors are upcast: each op computes in float32 (see the module docstring)."""
    if isinstance(value, np.ndarray | np.generic) and value.dtype == np.float16:
        return value.astype(np.float32)
    return value


def _store(value, dtype) -> np.ndarray:
    """Round an op's result to the dtype the program declares for it (e.g. fp16)."""
    return np.asarray(value).astype(types.nptype_from_builtin(dtype), copy=False)


def _last_uses(ops) -> dict[str, int]:
    """For each var name: the index of the last op reading it, to free tensors early."""
    last = {}
    for k, op in enumerate(ops):
        for var in op.get_flattened_inputs():
            last[var.name] = k
    return last


def evaluate(
    program: Program, inputs: Mapping[str, np.ndarray], function: str = "main"
) -> dict[str, np.ndarray]:
    """Run `function` of the program on named numpy inputs; returns its named outputs."""
    missing = unsupported_ops(program, function)
    if missing:
        raise UnsupportedOpError(missing)
    func = program.functions[function]
    env = {name: _store(inputs[name], var.dtype) for name, var in func.inputs.items()}
    keep = {var.name for var in func.outputs}
    ops = list(func.operations)
    last = _last_uses(ops)
    for k, op in enumerate(ops):
        if op.op_type == "const":
            env[op.outputs[0].name] = op.outputs[0].val
            continue
        args = {
            name: [_compute(env[v.name]) for v in var]
            if isinstance(var, list | tuple)
            else _compute(env[var.name])
            for name, var in op.inputs.items()
        }
        env[op.outputs[0].name] = _store(OPS[op.op_type](**args), op.outputs[0].dtype)
        for var in op.get_flattened_inputs():
            if last.get(var.name) == k and var.name not in keep:
                env.pop(var.name, None)
    return {var.name: env[var.name] for var in func.outputs}
