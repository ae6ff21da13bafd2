"""The web page in a real headless browser: Debian's Chromium driven by Playwright.

The service runs as users start it (``python -m service`` on the shipped model, CPU) on a free
loopback port (tests/service/browser.py, which says when these tests skip). Screenshots are
saved under ``test-output/web/``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from tests.service.browser import OUTPUT
from training.data.synthetic import SyntheticConfig, generate

RESULT_TIMEOUT_MS = 60_000


@pytest.fixture
def page(browser, service_url):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.goto(service_url)
    page.wait_for_function("document.querySelectorAll('#exit-select option').length > 1")
    yield page
    context.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    root = generate(tmp_path_factory.mktemp("web"), SyntheticConfig(seed=5, train=1, calibration=1, test=1), 1)
    return root / (root / "test.csv").read_text().split(",")[0]


def test_upload_shows_labels_exit_and_focus_boxes(page, service_url, video):
    # What the API answers for the same video and options is what the page must show.
    with video.open("rb") as upload:
        expected = httpx.post(
            f"{service_url}/classify",
            params={"thumbnails": "true", "exit": "balanced", "top_k": 5},
            files={"video": upload},
            timeout=60,
        ).json()
    assert page.input_value("#exit-select") == "balanced"

    page.set_input_files("#video-input", str(video))
    page.click("#classify-button")
    page.wait_for_selector("#result", state="visible")

    names = page.locator("#labels .label-name").all_text_contents()
    assert names == [entry["label"] for entry in expected["labels"]]
    scores = page.locator("#labels .label-score").all_text_contents()
    assert scores == [f"{100 * entry['score']:.1f}%" for entry in expected["labels"]]
    exit = expected["exit"]
    summary = page.text_content("#exit-summary")
    if exit["frames_processed"] < exit["frames_sampled"]:
        assert f"after step {exit['step'] + 1} of {exit['frames_sampled']}" in summary
    assert f"{expected['gmacs']['spent']:.3f} of {expected['gmacs']['full_model']:.3f} GMACs" in page.text_content(
        "#compute-summary"
    )

    # One drawn box per processed frame, where the API says, on a decoded thumbnail.
    frames = page.locator(".frame.processed")
    assert frames.count() == exit["frames_processed"] == len(expected["frames"])
    assert page.locator(".frame.skipped").count() == exit["frames_sampled"] - exit["frames_processed"]
    width, height = expected["video"]["width"], expected["video"]["height"]
    for number, frame in enumerate(expected["frames"]):
        picture = frames.nth(number).locator(".frame-picture").bounding_box()
        drawn = frames.nth(number).locator(".focus-box").bounding_box()
        image_width = frames.nth(number).locator("img").evaluate("image => image.naturalWidth")
        assert image_width > 0  # the JPEG thumbnail decoded in the browser
        box, scale = frame["box"], picture["width"] / width
        assert drawn["x"] - picture["x"] == pytest.approx(box["x"] * scale, abs=1.0)
        assert drawn["y"] - picture["y"] == pytest.approx(box["y"] * scale, abs=1.0)
        assert drawn["width"] == pytest.approx(box["width"] * scale, abs=1.0)
        assert picture["height"] == pytest.approx(height * scale, abs=1.0)

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=OUTPUT / "result.png", full_page=True)
    assert (OUTPUT / "result.png").stat().st_size > 10_000


def test_garbage_upload_shows_the_error_in_words(page, tmp_path):
    garbage = tmp_path / "holiday.mp4"
    garbage.write_bytes(b"these are not the frames you are looking for\n" * 200)
    page.set_input_files("#video-input", str(garbage))
    page.click("#classify-button")
    page.wait_for_selector("#error", state="visible")
    message = page.text_content("#error")
    assert message.startswith("This file is not a video the service can read.")
    assert page.is_hidden("#result")
    assert page.is_enabled("#classify-button")  # the person can try another file
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=OUTPUT / "error.png", full_page=True)


def test_dropping_a_video_on_the_page_classifies_it(page, video):
    # What a drag from the desktop delivers: a drop event whose DataTransfer holds the file.
    data = base64.b64encode(video.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "video/mp4" }));
            return transfer;
        }""",
        [video.name, data],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert video.name in page.text_content("#drop-text")
    page.click("#classify-button")
    page.wait_for_selector("#result", state="visible")
    assert page.locator("#labels .label").count() == 5
    assert page.locator(".frame.processed .focus-box").count() >= 1
