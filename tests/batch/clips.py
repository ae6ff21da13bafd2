"""A folder of generated clips for the batch tests: synthetic test clips the shipped model is sure
of (they exit at step 0), flat clips it is not (they run to the last step, through the job's
second round), and hostile files from the pipeline's corpus (``tests/pipeline/hostile_videos.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.pipeline.hostile_videos import make_case
from tests.videos import make_video
from training.data.synthetic import SyntheticConfig, generate

# Hostile cases and what the service answers for them under SERVICE_SETTINGS (its problem's
# title, or "ok"): empty, not a video, truncated, too large, no video stream, over a limit.
HOSTILE: dict[str, str] = {
    "empty": "Empty upload",
    "random_bytes": "Unsupported video format",
    "mp4_header_only": "Undecodable video",
    "mkv_truncated_mid_stream": "ok",  # the frames before the cut
    "over_the_byte_limit": "Video too large",
    "audio_only": "No video stream",
    "duration_over_the_limit": "Video exceeds a limit",
    "declared_size_over_pixel_limit": "Video exceeds a limit",
}
# The service's settings both front ends run with (tests/service/test_hostile_uploads.py's limits
# but the decode budget, which a 128x128 synthetic clip read in full would pass).
SERVICE_SETTINGS = {"max_pixels": 640 * 480, "max_upload_mb": 0.25}
BATCH_LIMITS = ["--max-pixels", str(640 * 480), "--max-mb", "0.25"]


def make_clips(folder: Path, scratch: Path) -> dict[str, Path]:
    """Write the clips into ``folder`` (some in a subfolder); ``{name: path}``."""
    clips: dict[str, Path] = {}
    root = generate(scratch / "synthetic", SyntheticConfig(seed=21, train=1, calibration=1, test=4), 1)
    for line in (root / "test.csv").read_text().splitlines():
        relative = line.split(",")[0]
        target = folder / "synthetic" / relative.replace("/", "_")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / relative, target)
        clips[target.stem] = target
    for index, frames in enumerate((16, 24)):
        clips[f"flat_{index}"] = make_video(folder / f"flat_{index}.mp4", frames=frames, width=64, height=48)
    for name in HOSTILE:
        made = make_case(name, scratch / "hostile")
        clips[name] = Path(shutil.copy(made, folder / f"{name}{made.suffix}"))
    return clips
