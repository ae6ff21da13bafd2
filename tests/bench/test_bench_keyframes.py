"""bench/bench_keyframes.py on a few generated clips: its re-encoding and its report."""

from __future__ import annotations

import json

import av

from bench.bench_keyframes import main, reencode
from training.data.synthetic import SyntheticConfig, generate


def _keyframe_numbers(path) -> list[int]:
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    order = sorted(range(len(packets)), key=lambda i: packets[i].pts)
    return [rank for rank, i in enumerate(order) if packets[i].is_keyframe]


def test_the_bench_reencodes_with_its_gop_and_reports_every_case(tmp_path):
    data = generate(tmp_path / "data", SyntheticConfig(seed=5, train=1, calibration=1, test=2, size=32), workers=1)
    clip = next((data / "test").rglob("*.mp4"))
    assert _keyframe_numbers(reencode(clip, tmp_path / "gop4.mp4", 4)) == list(range(0, 32, 4))
    assert main(["--data", str(data), "--clips", "2", "--out", str(tmp_path / "out"), "--work", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "out" / "keyframes.json").read_text())
    assert [case["case"] for case in results["cases"]] == [
        "every 16 frames (as generated)",
        "every 8 frames",
        "every 4 frames",
    ]
    every_4 = results["cases"][2]
    # 8 samples, a keyframe every 4 frames: 8 distinct keyframes, each decoded once, nothing else.
    assert every_4["keyframes"]["distinct_frames_per_clip"] == every_4["keyframes"]["frames_decoded_per_clip"] == 8
    assert every_4["uniform"]["frames_decoded_per_clip"] > 8
    table = (tmp_path / "out" / "keyframes.md").read_text()
    assert table.count("| keyframes |") == 3 and table.count("| uniform |") == 3
