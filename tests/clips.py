"""Test clips made from a photo: a slow pan and a zoom, encoded as a real video with PyAV, and
the temporal stability measure of issue 14 (mean frame-to-frame change, output over input).

    python tests/clips.py ../shared/data/content/tiger.jpg -o clip.mp4 [--size 256x192]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tn_export.images import load_image
from tn_export.sizes import parse_size


def pan_and_zoom(photo: Image.Image, size: tuple[int, int], frames: int) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of `size` (width, height): a window of 70 % of the photo that
    pans left to right across a fifth of it while zooming in by 15 %, one step per frame."""
    width, height = photo.size
    aspect = size[0] / size[1]
    for i in range(frames):
        t = i / max(frames - 1, 1)
        crop_h = 0.7 * min(height, width / aspect) / (1 + 0.15 * t)
        crop_w = crop_h * aspect
        cx = width * (0.4 + 0.2 * t)
        cy = height / 2
        box = (cx - crop_w / 2, cy - crop_h / 2, cx + crop_w / 2, cy + crop_h / 2)
        yield np.asarray(photo.resize(size, Image.BICUBIC, box=box))


def write_clip(
    path: Path, frames: Iterator[np.ndarray], rate: int = 15, audio_seconds: float = 0.0
) -> None:
    """Encode frames as H.264 (yuv420p) at `rate` fps into `path`; with `audio_seconds`, an AAC
    track of a 440 Hz tone beside it."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "18"}
        tone = None
        if audio_seconds:
            tone = out.add_stream("aac", rate=44100)
            tone.layout = "mono"
        for i, pixels in enumerate(frames):
            if i == 0:
                video.height, video.width = pixels.shape[:2]
            out.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(video.encode(None))
        if tone is not None:
            samples = int(44100 * audio_seconds)
            wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)
            for begin in range(0, samples, 1024):
                chunk = wave[begin : begin + 1024].astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 44100, begin, Fraction(1, 44100)
                out.mux(tone.encode(frame))
            out.mux(tone.encode(None))


def read_frames(path: Path) -> np.ndarray:
    """Every frame of a video as (N, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def frame_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames, in 8-bit levels."""
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())


def stability(styled: np.ndarray, photos: np.ndarray) -> float:
    """Issue 14's measure: how much more the output changes from frame to frame than the input
    (1: as much; a flickering output is far above it)."""
    return frame_change(styled) / frame_change(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=45)
    parser.add_argument("--rate", type=int, default=15)
    parser.add_argument("--audio", action="store_true", help="add a tone as an AAC track")
    args = parser.parse_args()
    frames = pan_and_zoom(load_image(args.photo), args.size, args.frames)
    write_clip(args.output, frames, args.rate, args.frames / args.rate if args.audio else 0.0)
    print(f"wrote {args.output} ({args.frames} frames, {args.size[0]}x{args.size[1]})")


if __name__ == "__main__":
    main()
