"""The batch benchmark's pieces: the process-tree sampler, the verdicts and the table (the runs
themselves are the benchmark's, not the tests')."""

from __future__ import annotations

import subprocess
import sys

from bench.bench_batch import TreeSampler, aims, best_cell, markdown

# A parent that starts a child burning about 0.6 s of CPU and waits for it.
BURNING_TREE = (
    "import subprocess, sys; "
    "subprocess.run([sys.executable, '-c', "
    "'import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass\\ntime.sleep(0.5)'])"
)


def test_the_sampler_counts_the_cpu_of_the_whole_tree():
    parent = subprocess.Popen([sys.executable, "-c", BURNING_TREE])
    with TreeSampler(parent.pid, interval_s=0.05) as tree:
        parent.wait(30)
    assert len(tree.cpu) >= 2  # the parent and its child
    assert 0.5 <= tree.cpu_s <= 5 and tree.peak_rss_mb > 1


def results(batch_rate: float, batch_cpu: float) -> dict:
    service = [
        {"concurrency": c, "videos_per_s": rate, "cpu_ms_per_video": 10.0, "frames_decoded_per_video": 3.0}
        for c, rate in ((1, 50.0), (4, 80.0), (16, 70.0))
    ]
    for cell in service:
        cell.update(p50_ms=1.0, p99_ms=2.0, peak_rss_mb=500.0)
    batch = {
        "command_videos_per_s": batch_rate / 2,
        "cpu_ms_per_video": batch_cpu * 3,
        "marginal_videos_per_s": batch_rate,
        "marginal_cpu_ms_per_video": batch_cpu,
        "fixed": {"command_s": 12.0, "cpu_s": 20.0},
        "frames_decoded_per_video": 3.0,
        "peak_rss_mb": 900.0,
    }
    return {
        "command": "python -m bench.bench_batch",
        "machine": "a test",
        "date": "2026-12-03",
        "cases": {"synthetic (adafocus_v2, exit balanced)": {"clips": 8, "service": service, "batch": batch}},
    }


def test_the_aim_compares_with_the_services_best_concurrency():
    assert best_cell(results(1, 1)["cases"]["synthetic (adafocus_v2, exit balanced)"]["service"])["concurrency"] == 4
    (met,) = aims(results(90.0, 8.0))
    assert met.startswith("- **Met**") and "concurrency 4) 80.0 videos/s" in met and "1.12x the rate" in met
    assert "(12 s and 20 CPU s for a one-clip job)" in met
    (slower,) = aims(results(70.0, 8.0))
    assert slower.startswith("- **Not met**")
    (costlier,) = aims(results(90.0, 12.0))
    assert costlier.startswith("- **Not met**") and "1.20x the CPU" in costlier


def test_the_table_has_a_row_per_service_cell_and_one_for_the_job():
    r = results(90.0, 8.0)
    r["aims"] = aims(r)
    text = markdown(r)
    rows = [line for line in text.splitlines() if line.startswith("| synthetic")]
    assert len(rows) == 5 and "| service, concurrency 16 | 70.0 | 10.0 |" in rows[2]
    assert "| adafocus-batch, the whole command | 45.0 | 24.0 |" in rows[3]
    assert "| adafocus-batch, each video past the first | 90.0 | 8.0 |" in rows[4]
    assert r["aims"][0] in text


def test_the_hosts_share_of_the_cpu_is_stated():
    from bench.bench_service import stolen_line
    from training.engine.machine import cpu_ticks, stolen_share

    start = cpu_ticks()
    assert start is not None and start[0] > 0 and 0 <= start[1] <= start[0]
    assert stolen_share((1000, 50), (3000, 250)) == 0.1
    assert stolen_share(None, (3000, 250)) is None and stolen_share((3000, 250), (3000, 250)) is None
    assert stolen_line({"stolen_cpu_share": 0.1234}) == [
        "CPU time stolen by the virtual machine's host during the run: 12.3%.",
        "",
    ]
    assert stolen_line({}) == []
