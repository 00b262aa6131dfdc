"""Per-channel range equalization of an fp32 ONNX graph before int8 quantization.

int8 QDQ quantizes each activation with one scale for all its channels, so a channel whose values
span a tenth of the widest one gets a tenth of the levels. Between a producer (Conv or
BatchNormalization) and the convolutions or norms that read its output there are only ops that
commute with a positive per-channel scale (LeakyReLU, padding, slices, concatenation, nearest
upsampling), so multiplying the producer's output channel c by s_c and dividing what its readers
take from that channel by s_c leaves the network's function unchanged while its activations
reach similar ranges (cross-layer equalization, Nagel et al. 2019, with measured ranges).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

# Ops through which channel c of the input stays channel c of the output, scaled alike.
_ELEMENTWISE = {"LeakyRelu", "Relu", "Identity", "Resize", "Pad"}
_SPATIAL_AXES = {2, 3, -1, -2}
_READERS = {"Conv", "BatchNormalization"}


def equalize(
    model: onnx.ModelProto, inputs: Iterable[dict[str, np.ndarray]], alpha: float = 0.5
) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with every equalizable producer's output channels rescaled toward its
    widest one by (widest / channel range) ** alpha, the ranges measured on `inputs`; and how many
    producers were rescaled. alpha 0 changes nothing; 1 gives every channel the same range (and
    puts the whole spread into the readers' weights)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    _unshare(graph)
    weights = {t.name: t for t in graph.initializer}
    consumers = defaultdict(list)
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers[name].append((node, i))
    outputs = {o.name for o in graph.output}
    plans = {}
    for node in graph.node:
        if node.op_type in _READERS and all(n in weights for n in node.input[1:]):
            readers = _readers(node.output[0], consumers, weights, outputs)
            if readers:
                plans[node.output[0]] = (node, readers)
    if not plans:
        return model, 0
    ranges = _channel_ranges(model, list(plans), inputs)
    for name, (producer, readers) in plans.items():
        r = np.maximum(ranges[name], 1e-6 * ranges[name].max())
        scale = (r.max() / r) ** alpha
        _scale_output(producer, scale, weights)
        for reader, offset in readers:
            _scale_input(reader, offset, scale, weights)
    return model, len(plans)


def _unshare(graph: onnx.GraphProto) -> None:
    """Give every Conv's and norm's use of an initializer its own copy: exporters merge equal
    constants (the norms of an untrained generator share their weights), and each is rescaled
    alone."""
    weights = {t.name: t for t in graph.initializer}
    used: set[str] = set()
    for node in (n for n in graph.node if n.op_type in _READERS):
        for i, name in enumerate(node.input):
            if name not in weights:
                continue
            if name in used:
                copy = onnx.TensorProto()
                copy.CopyFrom(weights[name])
                copy.name = f"{name}__{node.name}_{i}"
                graph.initializer.append(copy)
                node.input[i] = copy.name
            used.add(name)


def _readers(
    tensor: str, consumers: dict, weights: dict, outputs: set[str]
) -> list[tuple[onnx.NodeProto, int]] | None:
    """The Conv and BatchNormalization nodes that read `tensor`'s channels, each with the offset
    of its first channel in their input; None if any path reaches another kind of op."""
    found, todo, seen = [], [(tensor, 0)], set()
    while todo:
        name, offset = todo.pop()
        if name in outputs:
            return None
        for node, index in consumers[name]:
            key = (id(node), index)
            if key in seen:
                continue
            seen.add(key)
            op = node.op_type
            if op == "Shape":
                continue  # reads the dims only
            if index != 0 and op != "Concat":
                return None
            if op in _READERS:
                if op == "Conv" and _attr(node, "group", 1) != 1:
                    return None
                if any(n not in weights for n in node.input[1:]):
                    return None
                found.append((node, offset))
            elif (
                op in _ELEMENTWISE
                or (op == "Slice" and _spatial_slice(node, weights))
                or op == "Concat"
                and _attr(node, "axis", 0) in _SPATIAL_AXES
            ):
                todo.append((node.output[0], offset))
            elif op == "Concat" and _attr(node, "axis", 0) == 1:
                before = [_channels(n, weights, consumers) for n in node.input[:index]]
                if None in before:
                    return None
                todo.append((node.output[0], offset + sum(before)))
            else:
                return None
    return found


def _spatial_slice(node: onnx.NodeProto, weights: dict) -> bool:
    if len(node.input) < 4 or node.input[3] not in weights:
        return False
    return set(numpy_helper.to_array(weights[node.input[3]]).tolist()) <= _SPATIAL_AXES


def _channels(tensor: str, weights: dict, consumers: dict) -> int | None:
    """The channel count of a producer's output, from its weights (Conv: dim 0; BN: its scale)."""
    for node in (n for users in consumers.values() for n, _ in users):
        if tensor in node.output and node.op_type in _READERS and node.input[1] in weights:
            return int(weights[node.input[1]].dims[0])
    return None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next(
        (onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default
    )


def _channel_ranges(
    model: onnx.ModelProto, tensors: list[str], inputs: Iterable[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """max |x| per channel of each of `tensors` over `inputs`, run in onnxruntime."""
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, ["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for feed in inputs:
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            r = np.abs(value).max(axis=(0, 2, 3))
            ranges[name] = np.maximum(ranges[name], r) if name in ranges else r
    return ranges


def _update(weights: dict, name: str, array: np.ndarray) -> None:
    weights[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def _scale_output(node: onnx.NodeProto, scale: np.ndarray, weights: dict) -> None:
    """Multiply output channel c of a Conv or BatchNormalization by scale[c]."""
    if node.op_type == "Conv":
        w = numpy_helper.to_array(weights[node.input[1]])
        _update(weights, node.input[1], w * scale[:, None, None, None])
        if len(node.input) > 2 and node.input[2]:
            _update(weights, node.input[2], numpy_helper.to_array(weights[node.input[2]]) * scale)
    else:  # y = gamma (x - mean) / sqrt(var + eps) + beta
        for name in node.input[1:3]:
            _update(weights, name, numpy_helper.to_array(weights[name]) * scale)


def _scale_input(node: onnx.NodeProto, offset: int, scale: np.ndarray, weights: dict) -> None:
    """Make `node` read input channels offset.. scaled by `scale` as it read them before."""
    c = slice(offset, offset + len(scale))
    if node.op_type == "Conv":
        w = numpy_helper.to_array(weights[node.input[1]]).copy()
        w[:, c] /= scale[:, None, None]
        _update(weights, node.input[1], w)
        return
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    mean = numpy_helper.to_array(weights[node.input[3]]).copy()
    var = numpy_helper.to_array(weights[node.input[4]]).copy()
    mean[c] *= scale
    var[c] = scale**2 * (var[c] + eps) - eps
    _update(weights, node.input[3], mean)
    _update(weights, node.input[4], var)
