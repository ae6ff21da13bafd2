"""``report.md`` of one run: accuracy after each step and the exit operating points."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def run_report(summary: dict[str, Any]) -> str:
    metric = "mAP" if summary["multi_label"] else "top1"
    macs = summary["step_macs"]
    lines = [
        f"# {summary['variant']} run report",
        "",
        f"Per frame: {summary['gmacs_per_frame']:.4f} GMACs (glance {macs['glance'] / 1e9:.4f}, policy "
        f"{macs['policy'] / 1e9:.4f}, focus {macs['focus'] / 1e9:.4f}, classifier {macs['classifier'] / 1e9:.4f}); "
        f"every frame of a video: {summary['gmacs_per_video_full']:.4f} GMACs. Trained {summary['steps']} steps.",
        "",
    ]
    for split in ("calibration", "test"):
        if split in summary:
            per_step = summary[split]["per_step"]
            lines += [
                f"## {split.capitalize()} split ({summary[split]['videos']} videos): {metric} after each frame",
                "",
            ]
            lines += _table(
                ["frames", *[str(t + 1) for t in range(len(per_step))]],
                [[metric, *[f"{entry[metric]:.3f}" for entry in per_step]]],
            )
            lines.append("")
    focus = summary.get("test", {}).get("focus")
    if focus:
        lines += [
            "## Where the patches looked (test split, against the ground-truth target boxes)",
            "",
            f"Over {focus['frames']} processed frames: the patch holds at least half of the target in "
            f"{focus['hit_rate']:.1%} of them (hit rate); mean IoU of patch and target {focus['iou']:.3f}.",
            "",
        ]
    lines += ["## Exit operating points (calibrated on the calibration split)", ""]
    test_points = {(p["name"], p["p"]): p for p in summary.get("test", {}).get("operating_points", [])}
    rows = []
    for point in summary["operating_points"]:
        test = test_points.get((point["name"], point["p"]), {})
        rows.append(
            [
                ", ".join(point["names"]) or "-",
                "-" if point["p"] is None else f"{point['p']:.3g}",
                f"{point['expected_gmacs']:.4f}",
                f"{point['accuracy']:.3f}",
                f"{test['gmacs_per_video']:.4f}" if test else "-",
                f"{test['top1']:.3f}" if test else "-",
            ]
        )
    lines += _table(["name", "p", "GMACs/video (calib.)", "top-1 (calib.)", "GMACs/video (test)", "top-1 (test)"], rows)
    incremental = summary.get("test", {}).get("incremental_exit", {})
    if incremental:
        lines += ["", "## Early exit run for real (frame by frame) vs the offline simulation", ""]
        lines += _table(
            ["point", "videos", "same exit step", "same top-1", "max logit diff", "frames processed"],
            [
                [
                    name,
                    r["videos"],
                    r["same_exit_step"],
                    r["same_top1"],
                    f"{r['max_abs_logit_diff']:.2e}",
                    f"{r['frames_processed']} of {r['frames_without_exit']}",
                ]
                for name, r in incremental.items()
            ],
        )
    if summary.get("unreadable_videos"):
        lines += ["", f"## Unreadable videos skipped ({len(summary['unreadable_videos'])})", ""]
        lines += [f"- `{path}`" for path in summary["unreadable_videos"]]
    return "\n".join(lines) + "\n"


def write_run_report(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / "report.md"
    path.write_text(run_report(summary))
    return path
