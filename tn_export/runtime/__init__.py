"""Run exported generators with onnxruntime: textures of any size, photos of any size in tiles.

Torch-free on purpose (numpy, onnxruntime and Pillow only), so an app installs the base package
and nothing else. `load` (model.py) opens a model and checks it against its own metadata
(session.py); images over `max_memory` run in exact tiles (exact.py, on the two parts exported
beside the model), textures from counter-based noise (noise.py); models that cannot be tiled
exactly run large photos in blended tiles (tiling.py, which states that memory bound); the
strength and colour controls are controls.py's, the choice or mix of a model's styles is
styles.py's; video.py runs video files through PyAV (the
optional extra `video`, imported only there).
"""

from .model import MIN_SIDE, Model, load
from .styles import parse_mix, style_weights
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE_PIXELS, IMAGE_BYTES_PER_PIXEL, Progress

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_PIXELS",
    "IMAGE_BYTES_PER_PIXEL",
    "MIN_SIDE",
    "Model",
    "Progress",
    "load",
    "parse_mix",
    "style_weights",
]
