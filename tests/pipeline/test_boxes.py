"""Ground-truth boxes follow the frame into the model's crop (issue 24): resize, the clip's crop
(the centre, or a training draw with its scale and mirror) and clipping to the frame."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frames.decode import read_clip
from pipeline.frames.patch import boxes_in_crop
from pipeline.frames.transform import CropBox, FrameGeometry
from tests.videos import make_video


def _rectangle_frame(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = 255
    return frame


def _found(crop: np.ndarray) -> tuple[int, int, int, int]:
    """The bright rectangle's box in a crop (pixels above mid grey)."""
    ys, xs = np.nonzero(crop[..., 0] > 127)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(
    "crop_box",
    [CropBox(16, 0, 96), CropBox(0, 0, 96, flip=True), CropBox(32, 0, 72), CropBox(20, 10, 60, flip=True)],
)
def test_a_box_lands_where_the_cropped_frame_shows_it(crop_box):
    geometry = FrameGeometry(resize=96, crop=48)
    width, height = 256, 192  # resized to 128x96
    target = (120, 60, 184, 124)
    resized = _rectangle_frame(width, height, target)[::2, ::2]  # an exact 2x downscale
    crop = geometry.apply(np.ascontiguousarray(resized), crop_box)
    expected = boxes_in_crop(np.array(target), geometry, crop_box, (width, height))
    got = _found(crop)
    assert np.abs(np.array(got) - expected).max() <= 1.0, (got, expected)  # the rescale's edge pixels


def test_boxes_are_clipped_to_the_frame_and_keep_leading_axes():
    geometry = FrameGeometry(resize=64, crop=64)
    boxes = np.array([[[-10, 5, 20, 30], [50, 50, 90, 70]]])  # (1, 2, 4)
    out = boxes_in_crop(boxes, geometry, geometry.centre_box(64, 64), (64, 64))
    assert out.shape == (1, 2, 4)
    np.testing.assert_array_equal(out[0], [[0, 5, 20, 30], [50, 50, 64, 64]])


def test_a_clip_records_its_crop(tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=8, width=80, height=64)
    geometry = FrameGeometry(resize=64, crop=48)
    assert read_clip(video, 4, geometry).crop_box == geometry.centre_box(80, 64)
    drawn = read_clip(video, 4, geometry, rng=np.random.default_rng(3)).crop_box
    again = read_clip(video, 4, geometry, rng=np.random.default_rng(3)).crop_box
    assert drawn == again and drawn is not None
