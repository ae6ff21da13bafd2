"""Generated videos that a careless or hostile client could send.

Two families:

- the named makers used by the focused tests (:func:`negative_start_matroska`,
  :func:`size_switching_video`), MJPEG files whose packets can carry any size and timestamp;
- :data:`CASES`, a broad hostile-input corpus over containers, codecs, pixel formats, stream
  layouts, timestamps and limits. Each entry writes one small file (tiny frames, a few
  frames; well under a second to make) into a directory and returns its path. The suite
  (``tests/pipeline/test_hostile_suite.py``) states what the frame pipeline must make of each.

Files are made with PyAV (the wheel's FFmpeg build) and plain byte manipulation; nothing
here reads the network or any file outside the directory it is given.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.videos import frame_image, make_audio_only, make_video, set_mp4_rotation

Maker = Callable[[Path], Path]


def negative_start_matroska(path: Path, frames: int = 24, offset_ms: int = -2000) -> Path:
    """MJPEG in Matroska whose first timestamp is ``offset_ms`` before zero, muxed with the
    negative timestamps kept (``avoid_negative_ts`` disabled): FFmpeg indexes it, but seeking
    in it fails (``av.error.PermissionError`` from ``container.seek``)."""
    with av.open(str(path), "w", format="matroska", options={"avoid_negative_ts": "disabled"}) as output:
        stream = output.add_stream("mjpeg", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, 64, 64), format="rgb24")
            frame.pts, frame.time_base = i * 83, Fraction(1, 1000)
            for packet in stream.encode(frame):
                packet.pts += offset_ms
                packet.dts += offset_ms
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def size_switching_video(path: Path, sizes: list[tuple[int, int]], container: str = "avi", fps: int = 12) -> Path:
    """MJPEG whose frame ``i`` is ``sizes[i]`` (width, height) pixels: the container and the
    stream's header say the first size, the decoder then produces the others."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        encoders: dict[tuple[int, int], av.CodecContext] = {}
        for i, (width, height) in enumerate(sizes):
            encoder = encoders.get((width, height))
            if encoder is None:
                encoder = encoders[width, height] = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
                encoder.time_base = Fraction(1, fps)
            image = frame_image(i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in encoder.encode(frame):
                packet.stream = stream
                packet.pts = packet.dts = i
                packet.time_base = Fraction(1, fps)
                output.mux(packet)
    return path


def mjpeg_with_timestamps(path: Path, stamps_ms: list[int], container: str = "matroska", size: int = 32) -> Path:
    """MJPEG whose frame ``i`` carries ``stamps_ms[i]`` as pts, written as given (out of
    order, repeated or far apart). Every MJPEG packet is a keyframe; the dts is the pts when
    the stamps never go back, otherwise ``i`` (the muxer wants dts that never go back and
    never pass the pts, so out-of-order stamps must all be at least their position)."""
    in_order = all(a <= b for a, b in zip(stamps_ms, stamps_ms[1:]))
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("mjpeg", rate=12)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuvj420p"
        stream.time_base = Fraction(1, 1000)
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = size, size, "yuvj420p"
        encoder.time_base = Fraction(1, 1000)
        for i, stamp in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(frame_image(i, size, size), format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, 1000)
            for packet in encoder.encode(frame):
                packet.stream = stream
                packet.pts, packet.dts = stamp, stamp if in_order else i
                packet.time_base = Fraction(1, 1000)
                output.mux(packet)
    return path


def encoded(
    path: Path,
    codec: str,
    container: str | None = None,
    pix_fmt: str = "yuv420p",
    width: int = 32,
    height: int = 32,
    frames: int = 8,
    options: dict[str, str] | None = None,
    fps: int = 12,
) -> Path:
    """``frames`` frames of ``codec`` in ``container`` (random pixels, so every codec has
    something to code; pal8 gets a palette from the conversion)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image[: height // 2] = (8 * i) % 256
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def _h264(path: Path, frames: int = 12, **kwargs) -> Path:
    """A small H.264 MP4, the common case the byte-level cases start from."""
    return make_video(path, frames=frames, width=32, height=32, gop=4, **kwargs)


def _truncated(source: Path, path: Path, keep: Callable[[bytes], int]) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: keep(data)])
    return path


def _patched(path: Path, old: bytes, new: bytes, occurrence: int = 0) -> Path:
    """Replace the ``occurrence``-th ``old`` in the file by ``new`` (same length)."""
    assert len(old) == len(new)
    data = bytearray(path.read_bytes())
    at = -1
    for _ in range(occurrence + 1):
        at = data.index(old, at + 1)
    data[at : at + len(old)] = new
    path.write_bytes(bytes(data))
    return path


# -- bytes that are not a video at all --------------------------------------------------------
def empty(d: Path) -> Path:
    (d / "empty.mp4").write_bytes(b"")
    return d / "empty.mp4"


def one_byte(d: Path) -> Path:
    (d / "one.mp4").write_bytes(b"\x00")
    return d / "one.mp4"


def random_bytes(d: Path) -> Path:
    (d / "random.mp4").write_bytes(np.random.default_rng(1).bytes(16 * 1024))
    return d / "random.mp4"


def text_file(d: Path) -> Path:
    (d / "notes.mp4").write_text("this is not a video\n" * 50)
    return d / "notes.mp4"


def jpeg_image(d: Path) -> Path:
    """A still JPEG: FFmpeg's image demuxers are outside the allow-list."""
    path = encoded(d / "still.mkv", "mjpeg", "matroska", "yuvj420p", frames=1)
    with av.open(str(path)) as video:
        packet = next(p for p in video.demux(video.streams.video[0]) if p.size)
        (d / "still.jpg").write_bytes(bytes(packet))
    return d / "still.jpg"


def zip_archive(d: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("clip.mp4", _h264(d / "inner.mp4").read_bytes())
    (d / "archive.zip").write_bytes(buffer.getvalue())
    return d / "archive.zip"


# -- damaged files of an accepted container ---------------------------------------------------
def mp4_header_only(d: Path) -> Path:
    """The ``ftyp`` box of an MP4 and nothing else."""
    return _truncated(_h264(d / "full.mp4"), d / "header.mp4", lambda data: int.from_bytes(data[:4], "big"))


def mp4_moov_at_end_missing(d: Path) -> Path:
    """FFmpeg writes ``moov`` after ``mdat``: cut just before it, the frames are there but no index."""
    return _truncated(_h264(d / "full.mp4"), d / "no_moov.mp4", lambda data: data.rindex(b"moov") - 4)


def mp4_faststart(d: Path) -> Path:
    """``moov`` moved before ``mdat`` (``+faststart``): the streaming-friendly layout, valid."""
    path = d / "faststart.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as output:
        stream = output.add_stream("libx264", rate=12)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(i, 32, 32), format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def mp4_faststart_truncated_mid_keyframe(d: Path) -> Path:
    """``moov`` first, cut a few bytes into the first frame's data: the index promises frames
    whose bytes are missing."""
    source = mp4_faststart(d)
    return _truncated(source, d / "mid_keyframe.mp4", lambda data: data.rindex(b"mdat") + 4 + 16)


def mkv_truncated_mid_stream(d: Path) -> Path:
    """Matroska cut at 60%: the frames before the cut decode, the rest are missing."""
    source = make_video(d / "full.mkv", frames=24, width=32, height=32, container="matroska", gop=4)
    return _truncated(source, d / "mid_stream.mkv", lambda data: int(len(data) * 0.6))


def mkv_header_only(d: Path) -> Path:
    """Matroska cut inside its header (EBML and segment info, no cluster)."""
    source = make_video(d / "full.mkv", frames=8, width=32, height=32, container="matroska")
    return _truncated(source, d / "mkv_header.mkv", lambda _: 64)


def avi_truncated_mid_keyframe(d: Path) -> Path:
    """MJPEG AVI cut in the middle of its first frame's JPEG."""
    source = make_video(d / "full.avi", frames=8, width=32, height=32, codec="mjpeg", pix_fmt="yuvj420p")
    return _truncated(source, d / "mid_keyframe.avi", lambda data: data.index(b"00dc", data.index(b"movi")) + 200)


def garbage_packets(d: Path) -> Path:
    """A valid Matroska layout whose H.264 packet payloads are overwritten with random bytes
    (after the first keyframe, which is kept): the demuxer is happy, the decoder is not."""
    path = make_video(d / "garbage.mkv", frames=16, width=32, height=32, container="matroska", gop=16)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(2)
    start = data.index(b"\x1f\x43\xb6\x75")  # the first cluster
    middle = start + (len(data) - start) // 2
    data[middle : len(data) - 64] = rng.bytes(len(data) - 64 - middle)
    path.write_bytes(bytes(data))
    return path


def polyglot_mp4_zip(d: Path) -> Path:
    """An MP4 followed by a ZIP archive (both readers find their part): the video part is valid."""
    path = d / "polyglot.mp4"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.txt", "not for the decoder")
    path.write_bytes(_h264(d / "inner.mp4").read_bytes() + buffer.getvalue())
    return path


def unknown_codec_avi(d: Path) -> Path:
    """An MJPEG AVI whose codec tag says ``XXXX``: a container we take, a codec nobody decodes."""
    path = make_video(d / "unknown.avi", frames=8, width=32, height=32, codec="mjpeg", pix_fmt="yuvj420p")
    return _patched(_patched(path, b"MJPG", b"XXXX"), b"MJPG", b"XXXX")


def avi_declares_huge_frames(d: Path) -> Path:
    """An MJPEG AVI whose headers declare 30000x30000 frames; the JPEGs inside are 32x32."""
    path = make_video(d / "huge_header.avi", frames=8, width=32, height=32, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    huge = (30000).to_bytes(4, "little")
    strf = data.index(b"strf") + 8  # BITMAPINFOHEADER: size, width, height
    data[strf + 4 : strf + 12] = huge + huge
    avih = data.index(b"avih") + 8  # MainAVIHeader: width and height at 32 and 36
    data[avih + 32 : avih + 40] = huge + huge
    path.write_bytes(bytes(data))
    return path


def mp4_declared_duration_far_too_long(d: Path) -> Path:
    """An MP4 whose ``mvhd`` says it lasts 11 hours; its frames last one second."""
    path = _h264(d / "long_header.mp4")
    data = bytearray(path.read_bytes())
    mvhd = data.index(b"mvhd") + 4  # version, flags, created, modified, timescale, duration
    timescale = int.from_bytes(data[mvhd + 12 : mvhd + 16], "big")
    data[mvhd + 16 : mvhd + 20] = (40_000 * timescale).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


# -- containers and formats outside the allow-list --------------------------------------------
def flv(d: Path) -> Path:
    return make_video(d / "clip.flv", frames=8, width=32, height=32, container="flv")


def mpegts(d: Path) -> Path:
    return make_video(d / "clip.ts", frames=8, width=32, height=32, container="mpegts")


def gif(d: Path) -> Path:
    return encoded(d / "clip.gif", "gif", "gif", "rgb8")


def nut(d: Path) -> Path:
    return make_video(d / "clip.nut", frames=8, width=32, height=32, codec="ffv1", container="nut")


def _trap(d: Path) -> Path:
    """A named pipe with no writer: whoever opens it for reading blocks for ever, so a case that
    names it hangs (and fails on its time limit) if the pipeline follows the reference."""
    path = d / "secret.mp4"
    os.mkfifo(path)
    return path


def hls_playlist(d: Path) -> Path:
    """An HLS playlist naming a local file: must be refused without the file being opened (the
    file is a :func:`_trap`)."""
    secret = _trap(d)
    path = d / "playlist.m3u8"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{secret}\n#EXT-X-ENDLIST\n")
    return path


def concat_script(d: Path) -> Path:
    """FFmpeg's concat demuxer script, named ``.mp4``, naming a local file (a :func:`_trap`)."""
    secret = _trap(d)
    path = d / "list.mp4"
    path.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    return path


def mpegts_named_mp4(d: Path) -> Path:
    """An MPEG-TS file named ``.mp4``: the name says nothing, the bytes do."""
    path = mpegts(d)
    return path.rename(d / "really_ts.mp4")


# -- stream layouts ---------------------------------------------------------------------------
def audio_only(d: Path) -> Path:
    return make_audio_only(d / "audio.mp4")


def subtitles_only(d: Path) -> Path:
    """Matroska with one subtitle track and nothing else."""
    path = d / "subtitles.mkv"
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream("ass")
        stream.codec_context.subtitle_header = b""
        packet = av.Packet(b"Dialogue: 0,0:00:00.00,0:00:01.00,Default,,0,0,0,,hello")
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 1000)
        packet.duration = 1000
        output.mux(packet)
    return path


def too_many_streams(d: Path, streams: int = 20) -> Path:
    """Matroska with ``streams`` tiny MJPEG video tracks (more than the stream limit)."""
    path = d / "streams.mkv"
    with av.open(str(path), "w", format="matroska") as output:
        tracks = []
        for _ in range(streams):
            track = output.add_stream("mjpeg", rate=12)
            track.width = track.height = 16
            track.pix_fmt = "yuvj420p"
            tracks.append(track)
        for i in range(2):
            for track in tracks:
                frame = av.VideoFrame.from_ndarray(frame_image(i, 16, 16), format="rgb24")
                frame.pts = i
                for packet in track.encode(frame):
                    output.mux(packet)
        for track in tracks:
            for packet in track.encode():
                output.mux(packet)
    return path


def video_with_audio(d: Path) -> Path:
    """Video with an audio track: the first video stream is what counts."""
    return make_video(d / "with_audio.mp4", frames=8, width=32, height=32, with_audio=True)


def zero_frames(d: Path) -> Path:
    """A Matroska video track with no frame in it."""
    path = d / "zero.mkv"
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream("mjpeg", rate=12)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuvj420p"
        output.start_encoding()
    return path


def data_only(d: Path) -> Path:
    """An AVI with one data stream (no codec) and nothing else."""
    path = d / "data.avi"
    with av.open(str(path), "w", format="avi") as output:
        stream = output.add_data_stream()
        packet = av.Packet(b"opaque payload")
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 1000)
        output.mux(packet)
    return path


# -- frame counts and timestamps --------------------------------------------------------------
def one_frame(d: Path) -> Path:
    return _h264(d / "one_frame.mp4", frames=1)


def fewer_frames_than_samples(d: Path) -> Path:
    return _h264(d / "three_frames.mp4", frames=3)


def non_monotonic_timestamps(d: Path) -> Path:
    """Packets whose timestamps go back and forth (AVI-style frame numbers in Matroska)."""
    return mjpeg_with_timestamps(d / "shuffled.mkv", [0, 300, 100, 500, 200, 400, 700, 600])


def non_monotonic_timestamps_mp4(d: Path) -> Path:
    """The same in MP4 (decode times in order, composition offsets shuffling the display)."""
    return mjpeg_with_timestamps(d / "shuffled.mp4", [0, 300, 100, 500, 200, 400, 700, 600], container="mp4")


def far_future_timestamps(d: Path) -> Path:
    """Frames a tenth of a second apart, starting 35 years after zero (2**40 ms)."""
    return mjpeg_with_timestamps(d / "far.mkv", [2**40 + 100 * i for i in range(8)])


def duplicate_timestamps(d: Path) -> Path:
    """Every timestamp given twice."""
    return mjpeg_with_timestamps(d / "duplicates.mkv", [0, 0, 100, 100, 200, 200, 300, 300])


def huge_timestamp_jump(d: Path) -> Path:
    """Seven frames a tenth of a second apart, then one 12 days later: the video "lasts" that long."""
    return mjpeg_with_timestamps(d / "jump.mkv", [0, 100, 200, 300, 400, 500, 600, 10**9])


def duration_over_the_limit(d: Path) -> Path:
    """Two frames two hours apart (0.0001 fps, a real duration over any sane limit)."""
    return mjpeg_with_timestamps(d / "two_hours.mkv", [0, 7_200_000])


def variable_frame_rate(d: Path) -> Path:
    stamps = [0, 40, 80, 200, 210, 220, 500, 1000, 1010, 1500, 1540, 2000]
    return make_video(d / "vfr.mp4", frames=len(stamps), width=32, height=32, timestamps=stamps)


def b_frames(d: Path) -> Path:
    """H.264 with B-frames (decode order differs from display order)."""
    return encoded(d / "bframes.mp4", "libx264", "mp4", frames=16, options={"bf": "3", "g": "8"})


def rotated_90(d: Path) -> Path:
    """A 48x32 MP4 with a display matrix that turns it upright at 32x48."""
    path = make_video(d / "rotated.mp4", frames=8, width=48, height=32, marker=True)
    set_mp4_rotation(path, 90)
    return path


def static_long_one_keyframe(d: Path) -> Path:
    """240 identical frames and one keyframe: a few kilobytes that cost every frame to decode
    to the last sample (decode amplification, bounded by the decoded-frame cap)."""
    path = d / "static.mp4"
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=24, options={"g": "100000", "keyint_min": "100000"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        image = frame_image(3, 64, 64)
        for i in range(240):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def over_the_byte_limit(d: Path) -> Path:
    """A valid raw-video AVI of about 300 KB (over the suite's byte limit)."""
    return encoded(d / "big.avi", "rawvideo", "avi", "rgb24", width=64, height=64, frames=25)


# -- frame sizes ------------------------------------------------------------------------------
def one_by_one(d: Path) -> Path:
    return encoded(d / "1x1.mkv", "ffv1", "matroska", "yuv444p", width=1, height=1)


def two_by_ten_thousand(d: Path) -> Path:
    """A 2x10000 sliver: within the pixel limit, but its shorter-side resize is extreme."""
    return encoded(d / "sliver.mkv", "ffv1", "matroska", "gray", width=2, height=10000, frames=2)


def odd_dimensions(d: Path) -> Path:
    return encoded(d / "odd.mp4", "libx264", "mp4", "yuv444p", width=33, height=17)


def declared_size_over_pixel_limit(d: Path) -> Path:
    """An H.264 stream whose real frames are over the pixel limit (1280x720 against 640x480),
    small on disk (flat frames)."""
    return make_video(d / "big_frames.mp4", frames=2, width=1280, height=720)


# -- pixel formats ----------------------------------------------------------------------------
def yuv444p(d: Path) -> Path:
    return encoded(d / "yuv444p.mp4", "libx264", "mp4", "yuv444p")


def gray(d: Path) -> Path:
    return encoded(d / "gray.mkv", "ffv1", "matroska", "gray")


def rgb24(d: Path) -> Path:
    return encoded(d / "rgb24.mkv", "libx264rgb", "matroska", "rgb24")


def yuv420p10le(d: Path) -> Path:
    return encoded(d / "10bit.mkv", "ffv1", "matroska", "yuv420p10le")


def yuva420p(d: Path) -> Path:
    """VP9 with an alpha channel (stored as a side stream in WebM)."""
    return encoded(
        d / "alpha.webm", "libvpx-vp9", "webm", "yuva420p", options={"deadline": "realtime", "cpu-used": "8"}
    )


def _palettised(path: Path, codec: str, container: str, size: int = 32, frames: int = 8) -> Path:
    """Frames built as pal8 directly (swscale converts nothing to pal8): index ``i`` everywhere
    in frame ``i``, a grey ramp as the palette."""
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = palette[:, 1] = palette[:, 2] = np.arange(256)
    palette[:, 3] = 255
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = size, size, "pal8"
        for i in range(frames):
            frame = av.VideoFrame(size, size, "pal8")
            frame.planes[0].update(np.full((size, frame.planes[0].line_size), 8 * i, dtype=np.uint8).tobytes())
            frame.planes[1].update(palette.tobytes())
            frame.pts = i
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def pal8_png_mov(d: Path) -> Path:
    """Palettised PNG frames in QuickTime."""
    return _palettised(d / "pal8.mov", "png", "mov")


def pal8_raw_avi(d: Path) -> Path:
    """Palettised raw frames in AVI (the palette in the stream header, as old AVIs have it)."""
    return _palettised(d / "pal8.avi", "rawvideo", "avi")


# -- codecs in the accepted containers --------------------------------------------------------
def h264_mov(d: Path) -> Path:
    return make_video(d / "h264.mov", frames=8, width=32, height=32, container="mov")


def hevc_mp4(d: Path) -> Path:
    return encoded(d / "hevc.mp4", "libx265", "mp4", options={"x265-params": "log-level=none"})


def mpeg4_avi(d: Path) -> Path:
    return encoded(d / "mpeg4.avi", "mpeg4", "avi")


def mjpeg_avi(d: Path) -> Path:
    return encoded(d / "mjpeg.avi", "mjpeg", "avi", "yuvj420p")


def vp8_webm(d: Path) -> Path:
    return encoded(d / "vp8.webm", "libvpx", "webm", options={"deadline": "realtime"})


def vp9_webm(d: Path) -> Path:
    return encoded(d / "vp9.webm", "libvpx-vp9", "webm", options={"deadline": "realtime", "cpu-used": "8"})


def av1_mkv(d: Path) -> Path:
    return encoded(d / "av1.mkv", "libsvtav1", "matroska", width=64, height=64, options={"preset": "12"})


def ffv1_mkv(d: Path) -> Path:
    return encoded(d / "ffv1.mkv", "ffv1", "matroska", "yuv420p")


def png_mov(d: Path) -> Path:
    return encoded(d / "png.mov", "png", "mov", "rgb24")


def rawvideo_avi(d: Path) -> Path:
    return encoded(d / "raw.avi", "rawvideo", "avi", "yuv420p")


def prores_mov(d: Path) -> Path:
    return encoded(d / "prores.mov", "prores_ks", "mov", "yuv422p10le")


def mpeg2_mkv(d: Path) -> Path:
    return encoded(d / "mpeg2.mkv", "mpeg2video", "matroska")


def gif_in_mov(d: Path) -> Path:
    """The GIF codec inside an accepted container."""
    return encoded(d / "gif.mov", "gif", "mov", "rgb8")


def ffv1_avi(d: Path) -> Path:
    return encoded(d / "ffv1.avi", "ffv1", "avi", "yuv444p")


CASES: dict[str, Maker] = {
    maker.__name__: maker
    for maker in (
        empty,
        one_byte,
        random_bytes,
        text_file,
        jpeg_image,
        zip_archive,
        mp4_header_only,
        mp4_moov_at_end_missing,
        mp4_faststart,
        mp4_faststart_truncated_mid_keyframe,
        mkv_truncated_mid_stream,
        mkv_header_only,
        avi_truncated_mid_keyframe,
        garbage_packets,
        polyglot_mp4_zip,
        unknown_codec_avi,
        avi_declares_huge_frames,
        mp4_declared_duration_far_too_long,
        flv,
        mpegts,
        gif,
        nut,
        hls_playlist,
        concat_script,
        mpegts_named_mp4,
        audio_only,
        subtitles_only,
        too_many_streams,
        video_with_audio,
        zero_frames,
        data_only,
        one_frame,
        fewer_frames_than_samples,
        non_monotonic_timestamps,
        non_monotonic_timestamps_mp4,
        far_future_timestamps,
        duplicate_timestamps,
        huge_timestamp_jump,
        duration_over_the_limit,
        variable_frame_rate,
        b_frames,
        rotated_90,
        static_long_one_keyframe,
        over_the_byte_limit,
        one_by_one,
        two_by_ten_thousand,
        odd_dimensions,
        declared_size_over_pixel_limit,
        yuv444p,
        gray,
        rgb24,
        yuv420p10le,
        yuva420p,
        pal8_png_mov,
        pal8_raw_avi,
        h264_mov,
        hevc_mp4,
        mpeg4_avi,
        mjpeg_avi,
        vp8_webm,
        vp9_webm,
        av1_mkv,
        ffv1_mkv,
        png_mov,
        rawvideo_avi,
        prores_mov,
        mpeg2_mkv,
        gif_in_mov,
        ffv1_avi,
    )
}
"""Every hostile case by name: ``CASES[name](directory)`` writes the file and returns its path."""


def make_case(name: str, directory: Path) -> Path:
    """Write case ``name`` into a directory of its own under ``directory``."""
    own = directory / name
    os.makedirs(own, exist_ok=True)
    return CASES[name](own)
