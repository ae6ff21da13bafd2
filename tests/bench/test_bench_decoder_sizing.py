"""The decoder-count choice of bench/bench_decoder_sizing.py."""

from __future__ import annotations

from bench.bench_decoder_sizing import markdown, pick


def _cells(full: float, early: float, full_peak: float = 800.0) -> dict:
    row = {"p95_ms": 1000.0, "peak_rss_mb": 1500.0}
    return {
        "1080p": {
            "p128_full": [{**row, "videos_per_s": full, "peak_rss_mb": full_peak}],
            "p128_after_4": [{**row, "videos_per_s": early}],
        }
    }


def test_the_fewest_workers_within_three_percent_of_the_best_in_every_cell():
    results = {1: _cells(0.70, 1.0), 2: _cells(0.80, 2.0), 3: _cells(0.81, 2.05), 4: _cells(0.79, 2.1)}
    assert pick(results) == 3  # 2 is 4.8% behind 4 on the early exit
    results[2] = _cells(0.80, 2.04)
    assert pick(results) == 2
    summary = {"command": "c", "machine": "m", "date": "d", "concurrency": 16, "requests": 32, "cells": results}
    table = markdown({**summary, "picked": 2, "picked_without_budget": 4})
    assert table.count("| 1080p |") == 8 and "Picked: **2**" in table and "budget: **4**" in table


def test_the_memory_budget_rules_out_counts_whose_every_frame_cells_pass_it():
    results = {1: _cells(0.6, 1.5), 2: _cells(0.7, 1.6), 3: _cells(0.9, 2.0, full_peak=1300.0)}
    assert pick(results, budget_mb=float("inf")) == 3
    assert pick(results) == 2  # 3 peaks past 1 GB every frame; 2 is the best of 1 and 2
    everything_over = {n: _cells(v, v, full_peak=2000.0) for n, v in ((1, 0.5), (2, 0.9))}
    assert pick(everything_over) == 2  # no count fits: the budget cannot decide
