"""Video files through a style model: decode with PyAV, stylize the frames in batches, encode.

PyAV (the optional extra `video`; its wheels ship FFmpeg) is imported here only, when a video
is stylized. The frame rate and every frame's timestamp are kept and the audio track is copied
as it is (not re-encoded). An exported style model runs in eval mode, where the generator's
noise channels are zeros, so every frame gets the same noise and a still scene stays still.
The output is written to a temporary file and renamed into place when complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_path
from ..errors import UserError
from .controls import Controls
from .model import Model
from .session import first_line
from .styles import Style, style_weights
from .tiling import Progress

if TYPE_CHECKING:
    import av

# Containers written, by extension; each takes H.264 video and copies of common audio codecs.
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_BATCH = 4  # frames per run: fills 2 cores at 256..512 px without growing memory much
CRF = "18"  # libx264's constant quality: visually lossless, so the encoder adds little flicker


@dataclass(frozen=True)
class VideoResult:
    """What `stylize_video` wrote: frames, size (width, height), frame rate, audio kept."""

    path: Path
    frames: int
    size: tuple[int, int]
    rate: Fraction | None
    audio: bool
    seconds: float


def _av():
    try:
        import av
    except ImportError as e:
        raise UserError(
            "videos need PyAV: pip install 'tn-export[video]' (or av), then run this again"
        ) from e
    return av


def _open_input(av, source: Path) -> av.container.InputContainer:
    if source.is_dir():
        raise UserError(f"{source} is a folder, not a video; pass a video file")
    if not source.is_file():
        raise UserError(f"video {source} does not exist; check the path")
    try:
        return av.open(os.fspath(source))
    except av.FFmpegError as e:
        raise UserError(
            f"video {source} cannot be decoded ({_reason(e)}); it may be truncated or not a "
            "video: pass a file FFmpeg reads, e.g. an .mp4"
        ) from e


def _reason(error: Exception) -> str:
    """FFmpeg's words for a failure, without its error number and file name."""
    return getattr(error, "strerror", None) or first_line(error)


def _encoder(av) -> str:
    """H.264 where this FFmpeg has it (PyAV's wheels do), else MPEG-4 part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def stylize_video(
    model: Model,
    source: str | os.PathLike,
    target: str | os.PathLike,
    size: tuple[int, int] | None = None,
    *,
    strength: float = 1.0,
    keep_colors: bool = False,
    style: Style = None,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> VideoResult:
    """Restyle every frame of the video `source` into `target` (.mp4, .mov or .mkv).

    `size` (width, height): the frames' size in the output (default: the input's); `strength`,
    `keep_colors` and `style` as in `Model.stylize`; `batch` frames go through the session at once;
    `progress(done, total)` after each batch (total None where the file does not say).
    """
    source, target = Path(source), Path(target)
    if model.contract.mode != "style":
        raise UserError(
            f"{model.source} is a texture model: it has no picture input to follow, so a video "
            "needs a style model (tn-run video STYLE.onnx)"
        )
    if target.suffix.lower() not in CONTAINERS:
        raise UserError(f"cannot write {target}: use a .mp4, .mov or .mkv output name")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise UserError(f"batch must be a positive whole number, not {batch!r}", "batch")
    Controls(strength, keep_colors)  # checked before a file is opened
    style_weights(model.contract.styles, style, model.source)
    av = _av()
    start = time.perf_counter()
    with _open_input(av, source) as container:
        if not container.streams.video:
            raise UserError(f"{source} has no video stream; pass a video file")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        width, height = size or (video.codec_context.width, video.codec_context.height)
        if width % 2 or height % 2:
            raise UserError(
                f"frame size {width}x{height} has an odd side, which H.264's 4:2:0 colour "
                f"cannot hold; ask for even sides, e.g. {width // 2 * 2}x{height // 2 * 2}"
            )
        model.check_frames(batch, width, height)
        with atomic_path(target) as tmp:
            fmt = CONTAINERS[target.suffix.lower()]
            with av.open(os.fspath(tmp), "w", format=fmt) as output:
                encoder = output.add_stream(_encoder(av), rate=video.average_rate)
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
                encoder.codec_context.time_base = video.time_base  # timestamps kept as they are
                if encoder.name == "libx264":
                    encoder.options = {"crf": CRF}
                copy = _audio_copy(output, audio, source, target)
                total = video.frames or None
                done = 0
                pending: list[av.VideoFrame] = []

                def flush() -> None:
                    nonlocal done
                    photos = np.stack(
                        [f.to_ndarray(width=width, height=height, format="rgb24") for f in pending]
                    )
                    styled = model.stylize_frames(
                        photos, strength=strength, keep_colors=keep_colors, style=style
                    )
                    for frame, pixels in zip(pending, styled, strict=True):
                        out = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                        out.pts, out.time_base = frame.pts, frame.time_base
                        output.mux(encoder.encode(out))
                    done += len(pending)
                    pending.clear()
                    if progress is not None:
                        progress(done, total)

                try:
                    for packet in container.demux(*([video, audio] if copy else [video])):
                        if packet.stream is video:
                            for frame in packet.decode():
                                pending.append(frame)
                                if len(pending) == batch:
                                    flush()
                        elif packet.dts is not None:  # the demuxer's empty flush packet has none
                            packet.stream = copy
                            output.mux(packet)
                except av.FFmpegError as e:
                    raise UserError(
                        f"video {source} cannot be decoded after frame {done + len(pending)} "
                        f"({_reason(e)}); it may be truncated: nothing was written"
                    ) from e
                if pending:
                    flush()
                if done < (total or 1):
                    declared = f"the {total} frames it declares" if total else "any frame"
                    raise UserError(
                        f"video {source} ends before {declared} (decoded {done}); it may be "
                        "truncated: nothing was written"
                    )
                output.mux(encoder.encode(None))
    rate = video.average_rate
    return VideoResult(
        target, done, (width, height), rate, copy is not None, time.perf_counter() - start
    )


def _audio_copy(output, audio, source: Path, target: Path):
    """The output stream the audio track is copied into, or None without one."""
    if audio is None:
        return None
    try:
        return output.add_stream_from_template(audio)
    except (ValueError, _av().FFmpegError) as e:
        raise UserError(
            f"the audio of {source} ({audio.codec_context.name}) cannot be copied into "
            f"{target.suffix} ({_reason(e)}); write a .mkv, which takes any audio"
        ) from e
