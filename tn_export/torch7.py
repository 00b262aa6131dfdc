"""Import the paper's released texture generators (texture_nets v1, Lua Torch `.t7`).

Upstream nests the pyramid as nn.Concat({coarser path, this scale}) inside nn.Sequential, coarsest
scale innermost; that is exactly our `Join(coarse, fine)`, so the weights map one to one. Two
quirks of the released files decide whether the converted model reproduces the texture (design.md
section 1): the coarse-branch batch norms hold 8 values but upstream's kernel read one per channel
of their input, past the view into the flat parameter storage; and the output is Caffe pixels.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchfile
from torch import nn

from .budget import check_memory
from .checkpoint import Checkpoint, check_finite
from .errors import UserError
from .generator import PyramidGenerator

KNOWN_MODULES = frozenset(
    {
        "nn.Sequential",
        "nn.Concat",
        "nn.SpatialAveragePooling",
        "nn.GenNoise",
        "nn.SpatialCircularPadding",
        "nn.SpatialConvolution",
        "nn.SpatialBatchNormalization",
        "nn.LeakyReLU",
        "nn.SpatialUpSamplingNearest",
    }
)

# Upstream's `deprocess`: Caffe VGG pixels are BGR in 0..255 minus this mean.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

Pair = tuple[torchfile.TorchObject, torchfile.TorchObject]  # (SpatialConvolution, its BN)


class _Reader(torchfile.T7Reader):
    """Torch7 wrote C longs; the released files come from 64-bit Linux, so read 8 bytes on every
    platform (torchfile reads a native long, 4 bytes on Windows; its 8-byte option is broken)."""

    def read_long(self) -> int:
        return struct.unpack("<q", self.f.read(8))[0]

    def read_long_array(self, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}q", self.f.read(8 * n)))


class _Storages:
    """The storages of a file; reads floats at a tensor view's position, as Torch's C code did."""

    def __init__(self, objects: dict) -> None:
        # Storages own their memory; tensors are strided views into them.
        self.arrays = [
            a for a in objects.values() if isinstance(a, np.ndarray) and a.flags.owndata and a.size
        ]

    def read(self, obj: torchfile.TorchObject, name: str, shape: tuple, where: str) -> np.ndarray:
        """The module's `name` tensor as float32 of `shape`, read from its storage like Torch's C
        code: a 1-D view shorter than `shape` is read on past its end, as upstream's BN kernel did
        (one value per input channel); any other view must have exactly `shape`."""
        view = _fields(obj).get(name.encode())
        if not isinstance(view, np.ndarray) or view.size == 0:
            raise _layout_error(where, f"has no {name} tensor")
        count = math.prod(shape)
        short_1d = view.ndim == 1 and len(shape) == 1 and view.size <= count
        if view.shape != shape and not short_1d:
            raise _layout_error(where, f"has a {name} of shape {view.shape}, expected {shape}")
        contiguous = np.cumprod((1, *view.shape[:0:-1]))[::-1] * view.itemsize
        if view.strides != tuple(int(s) for s in contiguous):
            raise _layout_error(where, f"has a non-contiguous {name} tensor")
        start = view.__array_interface__["data"][0]
        for storage in self.arrays:
            base = storage.__array_interface__["data"][0]
            offset, rest = divmod(start - base, storage.itemsize)
            if storage.dtype == view.dtype and not rest and 0 <= offset < storage.size:
                if offset + count > storage.size:
                    raise _layout_error(where, f"reads its {name} past the end of its storage")
                return storage[offset : offset + count].astype(np.float32).reshape(shape)
        raise _layout_error(where, f"has a {name} tensor outside every storage")


class _LayoutError(Exception):
    """Raised while parsing; load_torch7 turns it into a UserError naming the file."""


def _layout_error(where: str, what: str) -> _LayoutError:
    return _LayoutError(f"{where} {what}")


@dataclass
class _Pyramid:
    """The released network, regrouped the way PyramidGenerator is built (coarsest first)."""

    ratios: list[int]
    branches: list[list[Pair]]
    joins: list[tuple[torchfile.TorchObject, torchfile.TorchObject, list[Pair]]]
    to_rgb: torchfile.TorchObject


def _typename(obj: object) -> str:
    return obj.torch_typename().decode("latin-1") if isinstance(obj, torchfile.TorchObject) else ""


def _describe(obj: object) -> str:
    if isinstance(obj, torchfile.TorchObject):
        return _typename(obj)
    kinds = ((np.ndarray, "a tensor"), (bytes, "a string"), ((dict, list), "a table"))
    return next((kind for t, kind in kinds if isinstance(obj, t)), f"the Lua value {obj!r:.20}")


def _fields(obj: torchfile.TorchObject) -> dict:
    # A Torch object's fields are a Lua table; a damaged file may hold anything there.
    return obj._obj if isinstance(obj._obj, dict) else {}


def _children(obj: torchfile.TorchObject) -> list:
    modules = _fields(obj).get(b"modules")
    return modules if isinstance(modules, list) else []


def _module_types(obj: object, found: set[str], inside: tuple[int, ...] = ()) -> set[str]:
    """Every Torch class name in the module tree (the modules lists of containers). A module
    among its own descendants (Torch7 files hold references) is refused: no tree could hold it."""
    if isinstance(obj, torchfile.TorchObject):
        if id(obj) in inside:
            raise _layout_error(f"the module {_typename(obj)}", "contains itself")
        found.add(_typename(obj))
        for child in _children(obj):
            _module_types(child, found, (*inside, id(obj)))
    return found


def _expect(obj: object, typename: str, where: str, **fields: object) -> torchfile.TorchObject:
    """`obj` if it is a `typename` module whose numeric fields have the given values."""
    if _typename(obj) != typename:
        raise _layout_error(where, f"is {_describe(obj)}, not {typename}")
    for key, value in fields.items():
        actual = _fields(obj).get(key.encode())
        if not isinstance(actual, int | float) or actual != value:
            raise _layout_error(where, f"has {key}={actual!r}, expected {value!r}")
    return obj


def _conv_block(modules: list, where: str) -> list[Pair]:
    """conv3x3 (circular pad), BN, LeakyReLU, conv3x3 (circular pad), BN, LeakyReLU, conv1x1, BN,
    LeakyReLU, as upstream's pyramid.lua builds every scale and every join."""
    if len(modules) != 9:
        raise _layout_error(where, f"has {len(modules)} modules where a conv block has 9")
    pairs = []
    for i, kernel in enumerate((3, 3, 1)):
        conv, bn, relu = modules[3 * i : 3 * i + 3]
        at = f"{where}, conv {i + 1}"
        if kernel == 3:
            seq = _expect(conv, "nn.Sequential", at)
            pad_conv = _children(seq)
            if len(pad_conv) != 2:
                raise _layout_error(at, "is not circular padding followed by a convolution")
            pad = dict(pad_l=1, pad_r=1, pad_t=1, pad_b=1)
            _expect(pad_conv[0], "nn.SpatialCircularPadding", at, **pad)
            conv = pad_conv[1]
        geometry = dict(kW=kernel, kH=kernel, dW=1, dH=1, padW=0, padH=0)
        pairs.append((_expect(conv, "nn.SpatialConvolution", at, **geometry), _batch_norm(bn, at)))
        _expect(relu, "nn.LeakyReLU", at, negval=0.01)
    return pairs


def _batch_norm(obj: object, where: str) -> torchfile.TorchObject:
    return _expect(obj, "nn.SpatialBatchNormalization", where, affine=True, eps=1e-5)


def _path(modules: list, where: str) -> tuple[list[int], list[list[Pair]], list]:
    """Parse the modules computing one path of the pyramid (before its upsampling or final norm):
    either a scale ([pool, GenNoise, conv block]) or a join ([Concat, conv block])."""
    head, block = modules[:-9], _conv_block(modules[-9:], where)
    kinds = [_typename(m) for m in head]
    if kinds == ["nn.SpatialAveragePooling", "nn.GenNoise"]:
        ratio = _fields(head[0]).get(b"kW")
        _expect(head[0], "nn.SpatialAveragePooling", where, kH=ratio, dW=ratio, dH=ratio)
        return [ratio], [block], []
    if kinds != ["nn.Concat"] or len(_children(head[0])) != 2:
        raise _layout_error(where, "is neither a scale nor a join of two paths")
    _expect(head[0], "nn.Concat", where, dimension=2)  # Lua's dim 2 of NCHW: channels
    coarse, fine = (_children(_expect(b, "nn.Sequential", where)) for b in _children(head[0]))
    # Upstream puts the coarser path (ending in upsampling + BN) first, like our Join.
    if len(coarse) < 11 or _typename(coarse[-2]) != "nn.SpatialUpSamplingNearest":
        raise _layout_error(where, "does not start its Concat with the upsampled coarser path")
    _expect(coarse[-2], "nn.SpatialUpSamplingNearest", where, scale_factor=2)
    ratios, branches, joins = _path(coarse[:-2], f"{where} > coarser path")
    fine_ratio, fine_branch, fine_joins = _path(fine[:-1], f"{where} > scale {len(ratios) + 1}")
    if fine_joins:
        raise _layout_error(where, "has a join on the fine side of its Concat")
    join = (_batch_norm(coarse[-1], where), _batch_norm(fine[-1], where), block)
    return ratios + fine_ratio, branches + fine_branch, [*joins, join]


def _parse(root: object) -> _Pyramid:
    modules = _children(_expect(root, "nn.Sequential", "the top module"))
    if not modules:
        raise _layout_error("the top module", "is empty")
    ratios, branches, joins = _path(modules[:-1], "the pyramid")
    to_rgb = _expect(
        modules[-1], "nn.SpatialConvolution", "the last module", kW=1, kH=1, nOutputPlane=3
    )
    return _Pyramid(ratios, branches, joins, to_rgb)


def _set(param: torch.Tensor, values: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(values)))


def _copy_block(block: nn.Sequential, pairs: list[Pair], storages: _Storages, where: str) -> None:
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    norms = [m for m in block if isinstance(m, nn.InstanceNorm2d)]
    for i, (conv, norm, (t_conv, t_bn)) in enumerate(zip(convs, norms, pairs, strict=True)):
        at = f"{where}, conv {i + 1}"
        for name in ("weight", "bias"):
            param = getattr(conv, name)
            _set(param, storages.read(t_conv, name, tuple(param.shape), at))
        _copy_norm(norm, t_bn, storages, at)


def _copy_norm(
    norm: nn.InstanceNorm2d, bn: torchfile.TorchObject, storages: _Storages, where: str
) -> None:
    """One weight and bias per channel of the norm's input, read from where the file's views
    start: the coarse-branch norms hold only 8 values each and read on into the parameters that
    follow them in the flat storage, as upstream's kernel did."""
    for name in ("weight", "bias"):
        _set(getattr(norm, name), storages.read(bn, name, (norm.num_features,), where))


def _copy_to_rgb(conv: nn.Conv2d, t_conv: torchfile.TorchObject, storages: _Storages) -> None:
    """Fold upstream's deprocess (BGR Caffe pixels -> RGB [0, 1]) into the final 1x1 conv."""
    where = "the last convolution"
    weight = storages.read(t_conv, "weight", tuple(conv.weight.shape), where)
    bias = storages.read(t_conv, "bias", (3,), where)
    mean = np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    _set(conv.weight, weight[::-1] / 255.0)
    _set(conv.bias, (bias[::-1] + mean[::-1]) / 255.0)


def _build(pyramid: _Pyramid, storages: _Storages) -> PyramidGenerator:
    first_weight = _fields(pyramid.branches[0][0][0]).get(b"weight")
    if not isinstance(first_weight, np.ndarray) or first_weight.ndim != 4:
        raise _layout_error("scale 1, conv 1", "has no 4-D weight tensor")
    channels, noise_depth = first_weight.shape[:2]
    generator = PyramidGenerator(
        mode="texture",
        scales=len(pyramid.branches),
        channels=channels,
        noise_depth=noise_depth,
        # The files hold no usable running statistics (upstream sampled with batch statistics);
        # per-sample statistics with the file's affine parameters reproduce the textures.
        norm="instance",
        padding="circular",
    )
    if pyramid.ratios != generator.ratios:
        raise _layout_error("the pyramid", f"pools by {pyramid.ratios}, not {generator.ratios}")
    for k, (branch, pairs) in enumerate(zip(generator.branches, pyramid.branches, strict=True)):
        _copy_block(branch, pairs, storages, f"scale {k + 1}")
    for k, (join, (coarse_bn, fine_bn, pairs)) in enumerate(
        zip(generator.joins, pyramid.joins, strict=True)
    ):
        where = f"join {k + 1}"
        _copy_norm(join.coarse_norm, coarse_bn, storages, f"{where}, coarse norm")
        _copy_norm(join.fine_norm, fine_bn, storages, f"{where}, fine norm")
        _copy_block(join.block, pairs, storages, where)
    _copy_to_rgb(generator.to_rgb, pyramid.to_rgb, storages)
    return generator.eval()


def _read_t7(path: Path) -> tuple[object, _Storages]:
    try:
        with open(path, "rb") as f:
            reader = _Reader(f)
            root = reader.read_obj()
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged or foreign file
        reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path} is not a readable Torch7 (.t7) file ({reason}); it may be truncated or "
            "another format: pass a texture_nets v1 *_model.t7 as released by upstream"
        ) from e
    return root, _Storages(reader.objects)


def exemplar_name(path: Path) -> str:
    """Upstream saved `<texture file name>_model.t7`: recover the texture's file name."""
    return path.name.removesuffix(".t7").removesuffix("_model")


def load_torch7(path: str | os.PathLike) -> Checkpoint:
    """Convert a released texture_nets v1 generator (`*_model.t7`) into a PyramidGenerator that
    takes N(0, 1) noise and outputs RGB in [0, 1], like the models tn-train writes."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"Torch7 model {path} {what}; pass a texture_nets v1 *_model.t7 file")
    check_memory(path.stat().st_size, f"Torch7 model {path}", "pass a released *_model.t7")
    root, storages = _read_t7(path)
    try:
        unknown = sorted(_module_types(root, set()) - KNOWN_MODULES)
        generator = None if unknown else _build(_parse(root), storages)
    except _LayoutError as e:
        raise UserError(
            f"{path} is not a texture_nets v1 pyramid: {e}; tn-export reads the generators "
            "released with the paper (texture_nets branch texture_nets_v1)"
        ) from e
    except UserError as e:  # a generator over the memory budget, refused before it is built
        raise UserError(f"{path}: {e}") from e
    if generator is None:
        raise UserError(
            f"{path} contains unknown Torch modules {', '.join(unknown)}; "
            "tn-export reads texture_nets v1 pyramids"
        )
    check_finite(generator, f"Torch7 model {path}")
    metadata = {
        "mode": "texture",
        "source": "texture_nets v1 (Lua Torch)",
        "file": path.name,
        "exemplar": exemplar_name(path),
        "descriptor": "vgg19 (upstream)",
    }
    return Checkpoint(generator, metadata, training_state=None)
