"""The fixed ImageNet descriptor (VGG) whose Gram statistics define a texture."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .budget import check_memory, unpacked_size
from .errors import UserError

DescriptorName = Literal["vgg19", "vgg16", "random"]

# torchvision's VGG configurations; "M" is a 2x2 max pool.
_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512],
}
# The "random" descriptor: VGG-16's layout at 1/8 of its width, cheap enough for tests.
_CFG["random"] = [c if c == "M" else c // 8 for c in _CFG["vgg16"]]

TEXTURE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_2"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHTS_ENV = "TN_DESCRIPTOR_WEIGHTS"


def layer_names(cfg: list) -> list[str]:
    """Names of torchvision's `features` modules in paper notation: conv1_1, relu1_1, pool1, ..."""
    names, block, idx = [], 1, 0
    for c in cfg:
        if c == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 0
        else:
            idx += 1
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
    return names


def _features(cfg: list) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
            cin = c
    return nn.Sequential(*layers)


class VGGDescriptor(nn.Module):
    """A frozen VGG that maps RGB images in [0, 1] to named activations.

    It keeps only the layers up to the deepest one asked for, so e.g. a style loss that ends at
    relu4_2 never computes block 5.
    """

    def __init__(self, name: DescriptorName, layers: Iterable[str]) -> None:
        super().__init__()
        if name not in _CFG:
            raise UserError(f"unknown descriptor {name!r}; choose vgg19, vgg16 or random")
        self.name = name
        self.layers = tuple(dict.fromkeys(layers))
        names = layer_names(_CFG[name])
        unknown = [layer for layer in self.layers if layer not in names]
        if unknown or not self.layers:
            raise UserError(
                f"unknown descriptor layer(s) {', '.join(unknown) or '(none)'} for {name}; "
                f"choose from {', '.join(n for n in names if n.startswith('relu'))}"
            )
        depth = max(names.index(layer) for layer in self.layers) + 1
        self.names = names[:depth]
        self.features = _features(_CFG[name])[:depth]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std
        out = {}
        for name, module in zip(self.names, self.features, strict=True):
            x = module(x)
            if name in self.layers:
                out[name] = x
        return out


def _no_weights_error(name: str, reason: str) -> UserError:
    return UserError(
        f"no ImageNet weights for the {name} descriptor ({reason}); either let torchvision "
        f"download them once (needs internet), or give descriptor_weights PATH, or set "
        f"{WEIGHTS_ENV}=PATH to a torchvision-layout state dict "
        f"(e.g. ../shared/descriptors/vgg16_imagenet_features.pth for the vgg16 descriptor)",
        "descriptor_weights",
    )


def _torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights, from its cache or (if the network allows) a download."""
    import torchvision.models as tvm

    weights = {"vgg16": tvm.VGG16_Weights, "vgg19": tvm.VGG19_Weights}[name].IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # fail fast offline instead of hanging on a dead network
    try:
        return weights.get_state_dict(progress=False, check_hash=not cached.exists())
    except Exception as e:  # noqa: BLE001 - any download failure means "not available"
        raise _no_weights_error(
            name, f"torchvision has none cached and download failed: {e}"
        ) from e
    finally:
        socket.setdefaulttimeout(previous)


def _file_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(
            f"descriptor weights {path} do not exist; fix descriptor_weights or {WEIGHTS_ENV}",
            "descriptor_weights",
        )
    unpacked = f"descriptor weights {path} (unpacked)"
    fix = "point descriptor_weights at a torchvision VGG state dict"
    check_memory(unpacked_size(path), unpacked, fix, "descriptor_weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(
            f"descriptor weights {path} are not a readable torch state dict ({type(e).__name__}); "
            f"{fix}",
            "descriptor_weights",
        ) from e
    if not isinstance(state, dict):
        raise UserError(f"descriptor weights {path} hold no state dict; expected a VGG state dict")
    return state


def load_descriptor(
    name: DescriptorName = "vgg19",
    layers: Iterable[str] = TEXTURE_LAYERS,
    descriptor_weights: str | os.PathLike | None = None,
    seed: int = 0,
) -> VGGDescriptor:
    """Build the descriptor with ImageNet weights: `descriptor_weights` (a torchvision-layout
    VGG state dict), else $TN_DESCRIPTOR_WEIGHTS, else
    torchvision's. `random` (tests only) is seeded and narrow, and never a silent fallback."""
    model = VGGDescriptor(name, layers)
    if name == "random":
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for m in model.features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        return model
    source = descriptor_weights or os.environ.get(WEIGHTS_ENV)
    if source:
        state = _file_state_dict(Path(source), name)
        origin = str(source)
    else:
        state = _torchvision_state_dict(name)
        origin = f"torchvision {name} ImageNet weights"
    # Accept both `vgg.state_dict()` ("features.0.weight") and `vgg.features.state_dict()`.
    state = {
        k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier")
    }
    wanted = model.features.state_dict()
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
    n_convs = sum(1 for k in state if k.endswith(".weight") and state[k].dim() == 4)
    if missing or wrong:
        arch = {13: "vgg16", 16: "vgg19"}.get(n_convs)
        hint = f"they look like {arch}: use that descriptor" if arch else "use a VGG state dict"
        raise UserError(f"descriptor weights {origin} do not fit {name} ({hint})")
    model.features.load_state_dict({k: state[k] for k in wanted})
    return model
