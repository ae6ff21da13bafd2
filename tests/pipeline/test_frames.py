"""The torch-free frame pipeline: sampling, geometry, decoding and bad input."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from pipeline.frames import (
    DecodeLimits,
    FrameGeometry,
    NoVideoStreamError,
    UndecodableVideoError,
    UnsupportedFormatError,
    VideoLimitError,
    VideoTooLargeError,
    segment_indices,
)
from pipeline.frames.decode import ClipReader, clip_from_resized, decode_only, read_all_resized, read_clip
from pipeline.frames.preview import encode_jpeg
from pipeline.frames.transform import normalise
from tests.paths import REPO
from tests.pipeline.hostile_videos import mjpeg_with_timestamps
from tests.videos import CONTAINERS, brightness_index, make_audio_only, make_video, set_mp4_rotation

GEOMETRY = FrameGeometry(resize=40, crop=32)


# -- sampling ------------------------------------------------------------------------------
def test_centre_sampling_takes_segment_centres():
    assert segment_indices(32, 4).tolist() == [4, 12, 20, 28]
    assert segment_indices(10, 3).tolist() == [1, 5, 8]


def test_random_sampling_stays_in_its_segment_and_is_seeded():
    for seed in range(20):
        indices = segment_indices(40, 4, np.random.default_rng(seed))
        assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(indices))
    assert np.array_equal(
        segment_indices(40, 4, np.random.default_rng(3)), segment_indices(40, 4, np.random.default_rng(3))
    )


def test_fewer_frames_than_samples_repeat_frames():
    assert segment_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert segment_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]


# -- geometry --------------------------------------------------------------------------------
def test_shorter_side_resize_keeps_the_aspect():
    geometry = FrameGeometry(256, 224)
    assert geometry.resized_size(1280, 720) == (455, 256)
    assert geometry.resized_size(720, 1280) == (256, 455)
    assert geometry.centre_box(1280, 720).left == (455 - 224) // 2


def test_normalise_is_the_per_pixel_formula_bit_for_bit():
    from pipeline.frames.transform import IMAGENET_MEAN, IMAGENET_STD, normalise

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    frames[0, :16, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)  # every value, every channel
    for batch in (frames, frames[:, 2:17, 5:25]):  # contiguous and a strided view
        expected = ((batch.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
        result = normalise(batch)
        assert result.dtype == np.float32 and result.flags.c_contiguous
        assert np.array_equal(result.view(np.uint32), np.ascontiguousarray(expected).view(np.uint32))
    with pytest.raises(ValueError):
        normalise(frames.astype(np.float32))


def test_scale_gives_the_pixels_of_a_plain_reformat():
    """The reused single-threaded scaling contexts change the cost, not the pixels."""
    import av

    from pipeline.frames.transform import INTERPOLATION, scale

    rng = np.random.default_rng(1)
    for width, height in ((128, 128), (320, 240), (97, 61)):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        source = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for frame in (source, source.reformat(format="yuv420p")):  # what a decoder gives, and a training crop
            for size, fmt in (((128, 96), "rgb24"), ((64, 64), "rgb24"), ((171, 128), "rgb24"), ((64, 64), None)):
                for _ in range(2):  # the second call reuses the context
                    ours = scale(frame, *size, format=fmt).to_ndarray()
                    plain = frame.reformat(*size, format=fmt, interpolation=INTERPOLATION).to_ndarray()
                    assert np.array_equal(ours, plain), (width, height, frame.format.name, size, fmt)


def test_geometry_refuses_a_crop_larger_than_the_resize():
    with pytest.raises(ValueError):
        FrameGeometry(100, 128)


def test_training_crops_are_multi_scale_and_inside_the_frame():
    geometry = FrameGeometry(64, 56)
    sizes = set()
    for seed in range(50):
        box = geometry.random_box(80, 64, np.random.default_rng(seed))
        rw, rh = geometry.resized_size(80, 64)
        assert 0 <= box.left <= rw - box.size and 0 <= box.top <= rh - box.size
        sizes.add(box.size)
    assert sizes == {64, 56, 48, 42}


# -- decoding --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, ext, codec, pix_fmt", CONTAINERS)
def test_every_container_decodes_the_right_frames(tmp_path, fmt, ext, codec, pix_fmt):
    path = make_video(tmp_path / f"v.{ext}", frames=24, codec=codec, pix_fmt=pix_fmt, container=fmt)
    clip = read_clip(path, 4, GEOMETRY)
    assert clip.frames.shape == (4, 3, 32, 32) and clip.frames.dtype == np.float32
    assert clip.num_frames == 24
    assert clip.frame_indices.tolist() == [3, 9, 15, 21]
    assert [brightness_index(f) for f in clip.frames] == [3, 9, 15, 21]
    assert np.allclose(clip.timestamps, np.array([3, 9, 15, 21]) / 12, atol=1e-3)
    assert clip.original_size == (64, 48)


@pytest.mark.parametrize("gop", [1, 4, 12, None])
def test_seek_and_sequential_paths_give_identical_frames(tmp_path, gop):
    path = make_video(tmp_path / "v.mp4", frames=30, gop=gop)
    clips = {s: read_clip(path, 5, GEOMETRY, strategy=s) for s in ("auto", "seek", "sequential")}
    for strategy, clip in clips.items():
        assert np.array_equal(clip.frames, clips["sequential"].frames), strategy
    assert clips["sequential"].seeks == 0
    if gop == 4:
        assert clips["auto"].seeks > 0
        assert clips["auto"].decoded_frames < clips["sequential"].decoded_frames


def test_decoding_from_a_file_object_equals_decoding_from_a_path(tmp_path):
    path = make_video(tmp_path / "v.mp4")
    from_path = read_clip(path, 4, GEOMETRY)
    from_bytes = read_clip(io.BytesIO(path.read_bytes()), 4, GEOMETRY)
    assert np.array_equal(from_path.frames, from_bytes.frames)


def test_training_sampling_is_random_per_segment_and_reproducible(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=24)
    a = read_clip(path, 4, GEOMETRY, rng=np.random.default_rng(5))
    b = read_clip(path, 4, GEOMETRY, rng=np.random.default_rng(5))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.frame_indices, b.frame_indices)
    assert [brightness_index(f) for f in a.frames] == a.frame_indices.tolist()


def test_variable_frame_rate_samples_by_frame_and_reports_real_times(tmp_path):
    stamps = [0, 10, 20, 500, 510, 520, 1000, 1500]  # milliseconds
    path = make_video(tmp_path / "vfr.mkv", frames=8, container="matroska", timestamps=stamps)
    clip = read_clip(path, 4, GEOMETRY)
    assert clip.num_frames == 8
    assert clip.frame_indices.tolist() == [1, 3, 5, 7]
    assert np.allclose(clip.timestamps, [0.010, 0.500, 0.520, 1.500], atol=1e-3)
    assert [brightness_index(f) for f in clip.frames] == [1, 3, 5, 7]


@pytest.mark.parametrize("size", [(33, 17), (17, 33), (2, 2)])
def test_odd_and_tiny_sizes(tmp_path, size):
    path = make_video(tmp_path / "odd.mkv", width=size[0], height=size[1], container="matroska", pix_fmt="yuv444p")
    clip = read_clip(path, 3, GEOMETRY)
    assert clip.frames.shape == (3, 3, 32, 32)
    assert clip.original_size == size


def test_single_frame_and_fewer_frames_than_samples_repeat(tmp_path):
    single = read_clip(make_video(tmp_path / "one.mp4", frames=1), 4, GEOMETRY)
    assert single.num_frames == 1 and single.frame_indices.tolist() == [0, 0, 0, 0]
    assert all(np.array_equal(single.frames[0], f) for f in single.frames)
    three = read_clip(make_video(tmp_path / "three.mp4", frames=3), 6, GEOMETRY)
    assert [brightness_index(f) for f in three.frames] == [0, 0, 1, 1, 2, 2]


def test_missing_frame_count_and_duration_metadata(tmp_path):
    # Raw H.264 in MPEG-TS style elementary streams has neither; Matroska written without
    # a duration has no frame count. The index pass counts frames itself.
    path = make_video(tmp_path / "v.mkv", frames=20, container="matroska")
    import av

    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    clip = read_clip(path, 4, GEOMETRY)
    assert clip.num_frames == 20


def test_video_with_audio_uses_the_video_stream(tmp_path):
    clip = read_clip(make_video(tmp_path / "av.mp4", frames=12, with_audio=True), 3, GEOMETRY)
    assert clip.num_frames == 12


@pytest.mark.parametrize("degrees, red_corner", [(90, "top_right"), (180, "bottom_right"), (270, "bottom_left")])
def test_rotation_metadata_is_applied(tmp_path, degrees, red_corner):
    path = make_video(tmp_path / "rot.mp4", frames=4, width=64, height=32, marker=True)
    set_mp4_rotation(path, degrees)
    clip = read_clip(path, 2, FrameGeometry(resize=32, crop=32), DecodeLimits(), strategy="sequential")
    assert clip.original_size == ((32, 64) if degrees != 180 else (64, 32))
    red = clip.frames[0, 0] - clip.frames[0, 2]  # red minus blue: large only on the marker
    h, w = red.shape
    corners = {
        "top_left": red[: h // 4, : w // 4],
        "top_right": red[: h // 4, -w // 4 :],
        "bottom_left": red[-h // 4 :, : w // 4],
        "bottom_right": red[-h // 4 :, -w // 4 :],
    }
    assert max(corners, key=lambda k: corners[k].mean()) == red_corner


# -- bad input -------------------------------------------------------------------------------
def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(NoVideoStreamError):
        read_clip(make_audio_only(tmp_path / "a.mp4"), 4, GEOMETRY)


def test_garbage_is_not_a_video(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormatError):
        read_clip(path, 4, GEOMETRY)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFormatError):
        read_clip(empty, 4, GEOMETRY)


@pytest.mark.parametrize("fmt, ext, codec, pix_fmt", CONTAINERS)
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_files_decode_what_is_there_or_fail_cleanly(tmp_path, fmt, ext, codec, pix_fmt, keep):
    path = make_video(tmp_path / f"v.{ext}", frames=24, codec=codec, pix_fmt=pix_fmt, container=fmt)
    data = path.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * keep)])
    try:
        clip = read_clip(cut, 4, GEOMETRY)
    except (UndecodableVideoError, UnsupportedFormatError, NoVideoStreamError):
        return  # a clear, typed error is a correct answer too
    assert clip.frames.shape == (4, 3, 32, 32) and np.isfinite(clip.frames).all()


def test_corrupted_middle_does_not_crash(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=24)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for position in rng.integers(len(data) // 3, len(data), 200):
        data[position] = rng.integers(0, 256)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    try:
        clip = read_clip(broken, 4, GEOMETRY)
        assert np.isfinite(clip.frames).all()
    except (UndecodableVideoError, UnsupportedFormatError, NoVideoStreamError):
        pass


def test_limits(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=24, width=64, height=48)
    with pytest.raises(VideoTooLargeError):
        read_clip(path, 4, GEOMETRY, DecodeLimits(max_bytes=100))
    with pytest.raises(VideoLimitError, match="pixels"):
        read_clip(path, 4, GEOMETRY, DecodeLimits(max_pixels=64 * 47))
    with pytest.raises(VideoLimitError, match="long"):
        read_clip(path, 4, GEOMETRY, DecodeLimits(max_duration_s=1.0))
    with pytest.raises(VideoLimitError, match="decoded frames"):
        read_clip(path, 4, GEOMETRY, DecodeLimits(max_decoded_frames=5), strategy="sequential")


def test_formats_outside_the_allow_list_are_refused(tmp_path):
    path = make_video(tmp_path / "v.mkv", container="matroska")
    with pytest.raises(UnsupportedFormatError):
        read_clip(path, 4, GEOMETRY, DecodeLimits(allowed_formats=("avi",)))


def test_playlists_cannot_reach_other_files(tmp_path):
    secret = make_video(tmp_path / "secret.mp4")
    playlist = tmp_path / "list.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(UnsupportedFormatError):
        read_clip(playlist, 4, GEOMETRY)
    concat = tmp_path / "concat.mp4"
    concat.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    with pytest.raises(UnsupportedFormatError):
        read_clip(concat, 4, GEOMETRY)


def test_the_pipeline_never_imports_torch():
    code = (
        "import sys, pipeline.frames.decode, pipeline.early_exit, pipeline.onnx_steps, pipeline.repository; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert result.returncode == 0


def test_parallel_decoders_give_the_same_frames(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=32, gop=4)
    one = read_clip(path, 8, GEOMETRY, threads=1)
    three = read_clip(path, 8, GEOMETRY, threads=3)
    assert np.array_equal(one.frames, three.frames)
    assert [brightness_index(f) for f in three.frames] == three.frame_indices.tolist()
    from_bytes = read_clip(io.BytesIO(path.read_bytes()), 8, GEOMETRY, threads=3)  # one decoder
    assert np.array_equal(from_bytes.frames, three.frames)


def test_a_subset_of_positions_gives_the_same_frames(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=40, gop=8)
    full = read_clip(path, 8, GEOMETRY)
    for positions in ([0], [3, 1], [5, 6, 7]):
        part = read_clip(path, 8, GEOMETRY, positions=positions)
        assert np.array_equal(part.frames, full.frames[positions])
        assert np.array_equal(part.frame_indices, full.frame_indices[positions])
        assert part.decoded_frames <= full.decoded_frames
    assert read_clip(path, 8, GEOMETRY, positions=[0]).decoded_frames < full.decoded_frames


@pytest.mark.parametrize("gop", [4, 12, 250])
def test_a_clip_read_in_stages_out_of_order_keeps_the_samples_it_passes(tmp_path, gop):
    # Coarse-to-fine stages (the service's decode_schedule): a later stage's samples decoded on
    # the way are kept, so no stage goes back for them, and an exit after the first stage costs
    # a part of the clip.
    path = make_video(tmp_path / "v.mp4", frames=96, gop=gop)
    full = read_clip(path, 8, GEOMETRY, threads=1)
    stages = ([3], [0], [6, 1], [4, 7, 2, 5])
    with ClipReader(io.BytesIO(path.read_bytes()), 8, GEOMETRY) as reader:
        clips = [reader.read(stage) for stage in stages]
    order = [p for stage in stages for p in stage]
    assert np.array_equal(np.concatenate([clip.frames for clip in clips]), full.frames[order])
    assert np.concatenate([clip.frame_indices for clip in clips]).tolist() == full.frame_indices[order].tolist()
    assert clips[0].decoded_frames < full.decoded_frames
    assert sum(clip.decoded_frames for clip in clips) <= 1.25 * full.decoded_frames
    if gop == 250:  # one keyframe: one forward pass, never back to the start
        assert clips[1].decoded_frames == 0  # sample 0 was kept on the way to sample 3
        assert sum(clip.seeks for clip in clips) == 0


@pytest.mark.parametrize("gop", [4, 250])
def test_decode_only_does_the_decoding_work_of_read_clip(tmp_path, gop):
    # The benchmark's decode floor: the same plan (frames decoded, seeks), nothing converted.
    path = make_video(tmp_path / "v.mp4", frames=60, gop=gop)
    for positions in (None, [0], [2, 5]):
        clip = read_clip(path, 8, GEOMETRY, threads=1, positions=positions)
        assert decode_only(path, 8, threads=1, positions=positions) == (clip.decoded_frames, clip.seeks)
    assert decode_only(path, 8, threads=1, positions=[0])[0] < decode_only(path, 8, threads=1)[0]


@pytest.mark.parametrize("gop", [4, 250])
def test_a_clip_read_in_stages_is_the_full_clip_and_costs_one_decode(tmp_path, gop):
    path = make_video(tmp_path / "v.mp4", frames=40, gop=gop)
    full = read_clip(path, 8, GEOMETRY, threads=1)
    with ClipReader(io.BytesIO(path.read_bytes()), 8, GEOMETRY) as reader:
        stages = [reader.read(stage) for stage in ([0], [1], [2, 3], [4, 5, 6, 7])]
    assert np.array_equal(np.concatenate([clip.frames for clip in stages]), full.frames)
    assert np.concatenate([clip.frame_indices for clip in stages]).tolist() == full.frame_indices.tolist()
    # The decoder goes on from where it stopped: no frame is decoded twice.
    assert sum(clip.decoded_frames for clip in stages) == full.decoded_frames
    assert stages[0].decoded_frames < full.decoded_frames
    with ClipReader(path, 8, GEOMETRY) as reader:
        crops = reader.read([2, 5], normalised=False).frames  # what a decoder process sends
    assert crops.dtype == np.uint8 and crops.shape == (2, 32, 32, 3)
    assert np.array_equal(normalise(crops), full.frames[[2, 5]])


def test_a_clip_reader_lets_go_of_its_decoder_once_every_sample_is_read(tmp_path):
    # An open decoder holds full-size frame buffers; the service keeps a reader until its
    # request ends, so the reader closes the decoder as soon as nothing is left to decode,
    # and opens it again only if a sample is asked for a second time.
    path = make_video(tmp_path / "v.mp4", frames=40, gop=8)
    full = read_clip(path, 8, GEOMETRY, threads=1)
    with ClipReader(io.BytesIO(path.read_bytes()), 8, GEOMETRY) as reader:
        reader.read([0, 1, 2, 3])
        assert reader.holds_decoder  # samples 4-7 are still to come
        reader.read([4, 5, 6, 7])
        assert not reader.holds_decoder
        again = reader.read([6, 2])
        assert np.array_equal(again.frames, full.frames[[6, 2]]) and again.decoded_frames > 0
        assert not reader.holds_decoder
    assert not reader.holds_decoder


def test_a_clip_reader_goes_back_for_a_sample_it_has_passed(tmp_path):
    # Keyframes every 4 frames, samples 10 apart: the first read seeks past samples 0-5 (each is
    # cheap to reach from its own keyframe later), so the second must seek back.
    path = make_video(tmp_path / "v.mp4", frames=80, gop=4)
    full = read_clip(path, 8, GEOMETRY)
    with ClipReader(path, 8, GEOMETRY) as reader:
        late, early = reader.read([6, 7]), reader.read([1, 0])
    assert np.array_equal(late.frames, full.frames[[6, 7]]) and np.array_equal(early.frames, full.frames[[1, 0]])
    assert [brightness_index(f) for f in early.frames] == full.frame_indices[[1, 0]].tolist()
    assert early.seeks >= 1


def test_a_reader_told_few_videos_need_the_later_samples_seeks_past_them(tmp_path):
    """An early exit's reader (``need_probability``): stage 3 needs sample 6; samples 4 and 5,
    between the decoder and 6's keyframe, belong to a stage few videos reach, so the reader
    seeks to 6's keyframe instead of decoding through them. The samples are the same."""
    path = make_video(tmp_path / "v.mp4", frames=96, width=64, height=48, gop=72)
    geometry = FrameGeometry(48, 48)
    full = read_clip(path, 8, geometry, threads=1)
    stages = [[3], [0], [6, 1], [4, 7, 2, 5]]  # decode_schedule of the order 3, 0, 6, 1, 4, 7, 2, 5
    decoded = {}
    for name, need in (("certain", None), ("rarely", [1, 1, 1, 1, 0.05, 0.05, 1, 0.05])):
        with ClipReader(path, 8, geometry, threads=1, need_probability=need) as reader:
            clips = [reader.read(stage) for stage in stages]
        for stage, clip in zip(stages, clips, strict=True):
            assert np.array_equal(clip.frames, full.frames[stage])
        decoded[name] = [clip.decoded_frames for clip in clips]
    assert sum(decoded["rarely"][:3]) < sum(decoded["certain"][:3])  # the videos that exit by step 4
    assert sum(decoded["certain"]) <= sum(decoded["rarely"])  # the few that read everything pay for it
    with pytest.raises(ValueError, match="need_probability"):
        ClipReader(path, 8, geometry, need_probability=[1.0] * 7)


# Frame i of each MJPEG file has brightness 8 i; its timestamp (ms) and the frames in presentation
# order. In the Matroska file the first stored frame is not the earliest. (An MP4 file so stored
# has an edit list that drops frames: its first stored frame is the earliest.)
OUT_OF_ORDER = {
    "mkv": ([500, 100, 300, 200, 700, 400, 600, 800], [1, 3, 2, 5, 0, 6, 4, 7]),
    "mp4": ([0, 300, 100, 500, 200, 400, 700, 600], [0, 2, 4, 1, 5, 3, 7, 6]),
}


@pytest.mark.parametrize("container, ext", [("matroska", "mkv"), ("mp4", "mp4")])
def test_frames_stored_out_of_presentation_order_come_in_it_from_every_reader(tmp_path, container, ext):
    """Frame i is the i-th in presentation order, whichever reader: the path (auto), a file
    object with seeks, the frame cache (read_all_resized) and a clip reader asked for samples
    out of order (5 twice: the second time it has passed it)."""
    stamps, in_presentation_order = OUT_OF_ORDER[ext]
    path = mjpeg_with_timestamps(tmp_path / f"shuffled.{ext}", stamps, container=container)
    data = path.read_bytes()
    clips = {
        "path": read_clip(path, 8, GEOMETRY),
        "seek": read_clip(io.BytesIO(data), 8, GEOMETRY, strategy="seek"),
        "cache": clip_from_resized(read_all_resized(path, GEOMETRY), 8, GEOMETRY),
    }
    for name, clip in clips.items():
        assert [brightness_index(f) for f in clip.frames] == in_presentation_order, name
        assert clip.timestamps.tolist() == pytest.approx([0.1 * i for i in range(8)]), name
    with ClipReader(io.BytesIO(data), 8, GEOMETRY) as reader:
        late, early = reader.read([7, 5]), reader.read([0, 1, 2, 3, 4, 5, 6])
    assert [brightness_index(f) for f in late.frames] == [in_presentation_order[7], in_presentation_order[5]]
    np.testing.assert_array_equal(early.frames, clips["path"].frames[:7])
    rng = np.random.default_rng(5), np.random.default_rng(5)  # training: random frames and crop
    trained = read_clip(path, 4, GEOMETRY, rng=rng[0])
    cached = clip_from_resized(read_all_resized(path, GEOMETRY), 4, GEOMETRY, rng=rng[1])
    np.testing.assert_array_equal(trained.frames, cached.frames)


def test_the_frame_cache_gives_read_clips_frames_when_timestamps_repeat(tmp_path):
    """Two frames with one timestamp are one frame to read_clip (it decodes by timestamp);
    the frame cache, which training reads, must take the same one for both."""
    path = mjpeg_with_timestamps(tmp_path / "repeats.mkv", [0, 0, 100, 100, 200, 200, 300, 300])
    cached = clip_from_resized(read_all_resized(path, GEOMETRY), 8, GEOMETRY)
    np.testing.assert_array_equal(cached.frames, read_clip(path, 8, GEOMETRY).frames)


def test_an_error_message_names_neither_the_file_nor_ffmpegs_error_number(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=8)
    header = path.read_bytes()[:64]  # the ftyp box and a little: a damaged MP4
    (tmp_path / "header.mp4").write_bytes(header)
    for source in (tmp_path / "header.mp4", io.BytesIO(header)):
        with pytest.raises(UndecodableVideoError) as error:
            read_clip(source, 8, GEOMETRY)
        message = str(error.value)
        assert "cannot be read" in message and "Invalid data" in message, message
        assert str(tmp_path) not in message and "Errno" not in message and "<none>" not in message, message


def test_a_truncated_clip_read_in_stages_is_the_truncated_full_clip(tmp_path):
    path = make_video(tmp_path / "v.mkv", frames=48, gop=250, container="matroska")  # header first
    data = path.read_bytes()
    cut = io.BytesIO(data[: int(len(data) * 0.6)])
    full = read_clip(io.BytesIO(cut.getvalue()), 8, GEOMETRY)
    with ClipReader(cut, 8, GEOMETRY) as reader:
        stages = [reader.read(stage) for stage in ([0], [1], [2, 3], [4, 5, 6, 7])]
    assert np.array_equal(np.concatenate([clip.frames for clip in stages]), full.frames)


def test_a_clip_reader_applies_the_limits_and_the_time_budget(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=60, fps=10)
    with pytest.raises(VideoLimitError):
        ClipReader(path, 8, GEOMETRY, DecodeLimits(max_duration_s=2.0))
    with pytest.raises(UnsupportedFormatError):
        ClipReader(io.BytesIO(b"not a video at all"), 8, GEOMETRY)
    from pipeline.frames.errors import DecodeTimeoutError

    with ClipReader(path, 8, GEOMETRY, DecodeLimits(max_wall_s=0.5)) as reader:
        reader.read([0])
        reader._spent_s += 1.0  # as if earlier calls had used the budget up
        with pytest.raises(DecodeTimeoutError):
            reader.read([1, 2, 3, 4, 5, 6, 7])


def _jpeg_to_rgb(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_previews_are_the_whole_resized_frames_as_jpeg(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=20, width=64, height=48)
    plain = read_clip(path, 4, GEOMETRY)
    clip = read_clip(path, 4, GEOMETRY, previews=True)
    assert plain.previews is None and np.array_equal(clip.frames, plain.frames)  # the model input is untouched
    every_frame = read_all_resized(path, GEOMETRY).frames
    for preview, index in zip(clip.previews, clip.frame_indices, strict=True):
        assert preview[:2] == b"\xff\xd8" and preview[-2:] == b"\xff\xd9"  # a complete JPEG
        rgb = _jpeg_to_rgb(preview)
        assert rgb.shape == every_frame[index].shape  # uncropped, aspect kept
        assert np.abs(rgb.astype(int) - every_frame[index]).mean() < 4  # the same picture, lossy


def test_encode_jpeg_refuses_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((8, 8, 3), dtype=np.float32))


def test_nearest_keyframes_takes_the_closer_and_the_earlier_on_a_tie():
    from pipeline.frames.sampling import nearest_keyframes

    indices = np.array([0, 3, 4, 5, 11, 30])
    assert nearest_keyframes(indices, [0, 8, 16]).tolist() == [0, 0, 0, 8, 8, 16]
    assert nearest_keyframes(indices, [10]).tolist() == [10] * 6
    with pytest.raises(ValueError):
        nearest_keyframes(indices, [])


@pytest.mark.parametrize("reader", ["read_clip", "clip_reader"])
def test_keyframes_sampling_moves_samples_to_keyframes_and_decodes_only_them(tmp_path, reader):
    # 32 frames, a keyframe every 8: the 8 centre samples (2, 6, ..., 30) move to 0, 8, 8, 16, 16,
    # 24, 24, 24, and the decoder decodes those 4 keyframes, nothing in between.
    path = make_video(tmp_path / "v.mp4", frames=32, gop=8)
    if reader == "read_clip":
        clip = read_clip(path, 8, GEOMETRY, sampling="keyframes")
    else:
        with ClipReader(io.BytesIO(path.read_bytes()), 8, GEOMETRY, sampling="keyframes") as opened:
            clip = opened.read(list(range(8)))
    assert clip.frame_indices.tolist() == [0, 8, 8, 16, 16, 24, 24, 24]
    assert [brightness_index(frame) for frame in clip.frames] == clip.frame_indices.tolist()
    assert clip.decoded_frames == 4
    uniform = read_clip(path, 8, GEOMETRY)
    assert uniform.frame_indices.tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    assert decode_only(path, 8, sampling="keyframes")[0] == 4 < decode_only(path, 8)[0]


def test_keyframes_sampling_of_a_video_with_one_keyframe_repeats_it(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=24, gop=250)
    clip = read_clip(path, 8, GEOMETRY, sampling="keyframes")
    assert clip.frame_indices.tolist() == [0] * 8 and clip.decoded_frames == 1
    with pytest.raises(ValueError, match="unknown sampling"):
        read_clip(path, 8, GEOMETRY, sampling="every_other")  # type: ignore[arg-type]
