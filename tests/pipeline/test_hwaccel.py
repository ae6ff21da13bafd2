"""Hardware decoding (ADAFOCUS_DECODE_HWACCEL): a device this process cannot create is warned
about once and decoding goes on in software, with the software decoder's samples (issue 25).

The success path needs a GPU (NVDEC): unmeasured on the machines these tests run on."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from av.codec.hwaccel import hwdevices_available

from pipeline.frames import decode
from pipeline.frames.decode import ClipReader, decode_only
from pipeline.frames.transform import FrameGeometry
from tests.videos import make_video

GEOMETRY = FrameGeometry(resize=32, crop=32)


def _creatable(device: str, path: Path) -> bool:
    try:
        with av.open(str(path), hwaccel=decode.hardware_device(device)):
            return True
    except (av.error.FFmpegError, OSError, ValueError):
        return False


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_video(tmp_path / "clip.mp4", frames=24, width=64, height=48)


@pytest.fixture
def missing_device(clip) -> str:
    missing = [device for device in hwdevices_available() if not _creatable(device, clip)]
    if not missing:
        pytest.skip("every hardware device of this FFmpeg build can be created here")
    return missing[0]


def test_a_device_that_cannot_be_created_falls_back_to_software_once(clip, missing_device, monkeypatch, caplog):
    monkeypatch.setattr(decode, "_unusable_hwaccels", set())
    with ClipReader(clip, 8, GEOMETRY, threads=1) as reader:
        software = reader.read(range(8), normalised=False)
    with caplog.at_level(logging.WARNING, logger=decode.__name__):
        for _ in range(2):
            with ClipReader(clip, 8, GEOMETRY, threads=1, hwaccel=missing_device) as reader:
                fallback = reader.read(range(8), normalised=False)
            np.testing.assert_array_equal(fallback.frames, software.frames)
    warned = [r for r in caplog.records if missing_device in r.getMessage()]
    assert len(warned) == 1 and "software" in warned[0].getMessage()  # once per process
    assert decode_only(clip, 8, hwaccel=missing_device) == decode_only(clip, 8)


def test_a_bad_file_is_still_the_files_error_with_a_device_asked_for(tmp_path, missing_device, monkeypatch):
    from pipeline.frames.errors import VideoError

    monkeypatch.setattr(decode, "_unusable_hwaccels", set())
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(VideoError):
        ClipReader(junk, 8, GEOMETRY, threads=1, hwaccel=missing_device)
    # The software decoder refused the file too: nothing is learnt about the device from it.
    assert decode._unusable_hwaccels == set()


def test_the_setting_names_a_device_of_this_ffmpeg_build(monkeypatch):
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings().decode_hwaccel is None
    monkeypatch.setenv("ADAFOCUS_DECODE_HWACCEL", "")
    assert Settings().decode_hwaccel is None  # Compose passes ${ADAFOCUS_DECODE_HWACCEL:-}
    monkeypatch.setenv("ADAFOCUS_DECODE_HWACCEL", hwdevices_available()[0])
    assert Settings().decode_hwaccel == hwdevices_available()[0]
    monkeypatch.setenv("ADAFOCUS_DECODE_HWACCEL", "cudaa")
    with pytest.raises(ValidationError, match="not a hardware device of this FFmpeg build"):
        Settings()


def test_the_service_with_a_missing_device_answers_as_in_software(tmp_path, missing_device):
    """The setting reaches the decoder processes; there the device fails and they decode in software."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.paths import SHIPPED_MODELS

    video = make_video(tmp_path / "upload.mp4", frames=16, width=128, height=128).read_bytes()
    answers = []
    for device in (None, missing_device):
        settings = Settings(
            model_repo=SHIPPED_MODELS, providers=["CPUExecutionProvider"], decode_workers=1, decode_hwaccel=device
        )
        with TestClient(create_app(settings)) as client:
            assert client.app.state.decoder.hwaccel == device
            response = client.post("/v1/classify", params={"exit": "off"}, files={"video": ("x.mp4", video)})
            assert response.status_code == 200, response.text
            answers.append({key: response.json()[key] for key in ("labels", "exit", "frames", "video")})
    assert answers[0] == answers[1]
