"""A batch job: list the inputs, skip those already written, run the Ray Data pipeline, write parts.

The pipeline (``batch.videos``): decode tasks (``map_batches`` on a task pool, one CPU each)
-> inference actors (``map_batches`` on an actor pool holding the ONNX sessions, GPUs where
the cluster has them) [-> decode tasks -> inference actors, for the videos that did not exit
on their first sample]. The driver iterates over the results as they stream out, writes them
(:class:`batch.output.PartWriter`), shows a progress bar with rate and ETA, and ends with a
:class:`Summary`. Ray runs locally without a cluster unless ``ray_address`` names one.
"""

from __future__ import annotations

import logging
import math
import os
import random
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.answers import OK, Exit, choose_exit, default_exit
from pipeline.frames.decode import LoopFilterSkip
from pipeline.manifest import Manifest
from pipeline.repository import load_pipeline

from .inputs import VIDEO_EXTENSIONS, list_inputs, size_of
from .limits import Limits, skip_loop_filter_setting
from .output import Format, PartWriter, done_paths
from .videos import DecodeSpec, ModelSpec, classifier, decode_batch, unpack

log = logging.getLogger("batch")

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass
class JobConfig:
    """Everything a job needs; the command line's options (``batch.cli``)."""

    input: str
    out: str
    model: str = "adafocus_v2"  # NAME or NAME:VERSION (the newest version without one)
    repo: str = "model_repo"
    exit: str | None = None  # None: the service's default rule (ADAFOCUS_DEFAULT_EXIT, else every frame)
    format: Format = "parquet"
    top_k: int = 5
    ray_address: str | None = None
    decode_workers: int | None = None  # None: one per CPU of the cluster (this machine's, locally)
    inference_workers: int | None = None  # None: one per GPU, or one on a cluster without GPUs
    gpus_per_actor: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_actor: float = 1.0
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    threads: int = 0  # ONNX Runtime intra-op threads per session (0: its default)
    trt_cache_dir: str | None = None
    trt_fp16: bool = False  # TensorRT engines in FP16 (cached apart, under trt_cache_dir/fp16)
    decode_batch: int = 32  # most videos per decode task call (fewer of large files: decode_block_mb)
    decode_block_mb: float = 8.0  # about this much video per decode task call
    decode_memory_mb: float = 256.0  # memory Ray reserves per decode task
    inference_batch: int = 32  # videos per actor call, and most rows in one batched step
    limits: Limits = field(default_factory=Limits.from_environment)
    skip_loop_filter: LoopFilterSkip = field(default_factory=skip_loop_filter_setting)
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    flush_rows: int = 256
    flush_s: float = 10.0
    progress: bool = True


@dataclass
class Summary:
    """What a run did: inputs, rows written, time, statuses and exit steps of its rows."""

    inputs: int
    skipped: int
    written: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    exit_steps: Counter = field(default_factory=Counter)
    frames_decoded: int = 0
    gmacs: float = 0.0

    @property
    def videos_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def count(self, row: dict[str, Any]) -> None:
        self.written += 1
        self.statuses[row["status"]] += 1
        if row["status"] == OK:
            self.exit_steps[row["exit_step"]] += 1
        self.frames_decoded += row["frames_decoded"]
        self.gmacs += row["gmacs"]

    def lines(self) -> list[str]:
        """The summary a run ends with."""
        lines = [
            f"{self.inputs} inputs: {self.skipped} already written (skipped), {self.written} classified "
            f"in {self.seconds:.1f} s ({self.videos_per_s:.1f} videos/s)"
        ]
        if self.written:
            errors = {status: n for status, n in self.statuses.items() if status != OK}
            lines.append(f"ok: {self.statuses[OK]}; errors: " + (_counts(errors) if errors else "none"))
            if self.exit_steps:
                lines.append("exit step (0-based): " + _counts(dict(sorted(self.exit_steps.items()))))
            lines.append(
                f"frames decoded: {self.frames_decoded / self.written:.1f} per video; "
                f"GMACs: {self.gmacs / self.written:.4f} per video"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "skipped": self.skipped,
            "written": self.written,
            "seconds": self.seconds,
            "videos_per_s": self.videos_per_s,
            "statuses": dict(self.statuses),
            "exit_steps": {str(step): n for step, n in sorted(self.exit_steps.items())},
            "frames_decoded": self.frames_decoded,
            "gmacs": self.gmacs,
        }


def _counts(counts: dict) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counts.items())


def model_spec(config: JobConfig) -> tuple[ModelSpec, Manifest]:
    """The verified pipeline version the job runs (fixed now: a version exported mid-run is not
    picked up), with its exit; raises ``ModelRepositoryError`` or ``ExitError``."""
    name, _, version = config.model.partition(":")
    pipeline = load_pipeline(Path(config.repo), name, int(version) if version else None)
    manifest = pipeline.manifest
    if config.exit is not None:
        exit: Exit | None = choose_exit(manifest, config.exit)
    else:
        exit = default_exit(manifest, os.environ.get("ADAFOCUS_DEFAULT_EXIT", "balanced"))
    spec = ModelSpec(
        repo=str(Path(config.repo).resolve()),
        name=manifest.name,
        version=manifest.version,
        exit=exit,
        top_k=config.top_k,
        providers=tuple(config.providers),
        threads=config.threads,
        trt_cache_dir=config.trt_cache_dir,
        trt_fp16=config.trt_fp16,
        max_batch=config.inference_batch,
    )
    return spec, manifest


def run_job(config: JobConfig) -> Summary:
    """Classify every input of ``config`` not already in its output; returns what was done."""
    model, manifest = model_spec(config)
    paths = list_inputs(config.input, config.extensions)
    done = done_paths(config.out)
    todo = [path for path in paths if path not in done]
    summary = Summary(inputs=len(paths), skipped=len(paths) - len(todo))
    if not todo:
        return summary
    started_ray = _start_ray(config)
    try:
        started = time.perf_counter()
        writer = PartWriter(config.out, config.format, config.flush_rows, config.flush_s)
        try:
            for row in _progress(_results(config, model, manifest, todo), len(todo), config.progress):
                writer.add([row])
                summary.count(row)
        finally:
            writer.flush()  # Ctrl-C or an error: what arrived is kept
            summary.seconds = time.perf_counter() - started
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return summary


def _start_ray(config: JobConfig) -> bool:
    """Connect to the cluster, or start Ray on this machine (quiet: no dashboard, errors only).
    False if Ray was already running in this process (a caller's session is left to it)."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if config.ray_address:
        ray.init(address=config.ray_address, **quiet)
    else:
        ray.init(num_cpus=local_cpus(config), **quiet)
    return True


def local_cpus(config: JobConfig) -> int:
    """Logical CPUs of a local Ray: the machine's, or enough for every decode task and actor at
    once (Ray schedules by logical CPUs; the actors wait for batches much of the time)."""
    cores = os.cpu_count() or 1
    decoders = config.decode_workers or cores
    actors = 2 * (config.inference_workers or 1) * config.cpus_per_actor
    return max(cores, math.ceil(decoders + actors))


def _quiet_ray_data() -> None:
    """Ray Data's own progress bars and INFO logs off: the job shows one bar of its own."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    # A small job has fewer blocks than decode tasks allowed: not worth a warning.
    warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks", category=UserWarning)


def _resources(config: JobConfig) -> tuple[int, int, float]:
    """(decode tasks, inference actors per round, GPUs per actor) for the cluster Ray runs on."""
    import ray

    cluster = ray.cluster_resources()
    gpus = int(cluster.get("GPU", 0))
    per_actor = config.gpus_per_actor if config.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    actors = config.inference_workers or (max(1, int(gpus / per_actor)) if per_actor else 1)
    if config.decode_workers:
        return config.decode_workers, actors, per_actor
    if not config.ray_address:  # locally, one decode task per core (the actors share them)
        return os.cpu_count() or 1, actors, per_actor
    return max(1, int(cluster.get("CPU", 1) - 2 * actors * config.cpus_per_actor)), actors, per_actor


MAX_BLOCKS = 10_000  # blocks of one job's input list (Ray Data's per-block cost stays small beside the work)
SIZE_SAMPLE = 32  # inputs whose sizes decide the block size (a stat each, or a request on object storage)


def videos_per_block(paths: list[str], most: int, block_mb: float) -> int:
    """Videos per block of the input list, that is per decode task call: ``most``, or fewer when
    the files are large, so that a block holds about ``block_mb`` of video (the median size of a
    sample of ``paths``). Measured on 2 cores, 480 synthetic clips of 58 KB with the balanced
    exit (two rounds): 22.2 and 24.5 videos/s with 8-video blocks, 26.7-30.7 with 32-video ones
    (Ray's cost per block and stage); a few large blocks of large files would leave decode
    tasks idle at the start and end of a job (24 copies of a 1.2 MB 720p clip: 6 per block)."""
    sizes = []
    for path in random.Random(0).sample(paths, min(len(paths), SIZE_SAMPLE)):
        try:
            sizes.append(size_of(path))
        except OSError:
            pass  # unreadable: its row will say so; it does not size the blocks
    if not sizes:
        return most
    return max(1, min(most, int(block_mb * 2**20 / max(statistics.median(sizes), 1))))


def _results(config: JobConfig, model: ModelSpec, manifest: Manifest, todo: list[str]) -> Iterator[dict[str, Any]]:
    """The output rows of ``todo``, as the pipeline produces them (in no particular order)."""
    import ray.data

    _quiet_ray_data()
    decoders, actors, gpus = _resources(config)
    spec = DecodeSpec.of(manifest, config.limits.decode_limits(), model.exit, config.skip_loop_filter)
    staged = spec.first is not None  # a second round for the videos that did not exit on one sample
    per_block = max(
        videos_per_block(todo, config.decode_batch, config.decode_block_mb), math.ceil(len(todo) / MAX_BLOCKS)
    )
    blocks = math.ceil(len(todo) / per_block)
    dataset = ray.data.from_items([{"path": path} for path in todo], override_num_blocks=blocks)
    # A decode task reserves memory for its container and frames; that the actors reserve none
    # also keeps Ray from fusing the two (it fuses only alike remote arguments): decoding stays
    # in tasks that scale apart from the model's actors.
    decode = {
        "batch_size": per_block,  # one block per call: a larger batch_size would bundle blocks
        "compute": ray.data.TaskPoolStrategy(size=decoders),
        "num_cpus": 1,
        "memory": config.decode_memory_mb * 2**20,
    }
    # Both rounds' actors share the GPUs (the second one is mostly idle).
    infer = {
        "batch_size": config.inference_batch,
        "compute": ray.data.ActorPoolStrategy(size=actors),
        "num_cpus": config.cpus_per_actor,
        "num_gpus": gpus / 2 if staged else gpus,
    }
    dataset = dataset.map_batches(decode_batch, fn_kwargs={"spec": spec, "first": True}, **decode)
    dataset = dataset.map_batches(classifier(model, final=not staged), **infer)
    if staged:
        dataset = dataset.map_batches(decode_batch, fn_kwargs={"spec": spec, "first": False}, **decode)
        dataset = dataset.map_batches(classifier(model, final=True), **infer)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for data in batch["video"]:
            answer = unpack(data).answer
            assert answer is not None, "the last round answers every video"
            yield answer


def _progress(rows: Iterator[dict[str, Any]], total: int, shown: bool) -> Iterator[dict[str, Any]]:
    """``rows``, counted on a tqdm bar (rate and ETA) on stderr when ``shown`` and tqdm is installed."""
    if not shown:
        yield from rows
        return
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a convenience: the summary still comes
        yield from rows
        return
    with tqdm(total=total, unit="video", desc="classify", file=sys.stderr, smoothing=0.1) as bar:
        for row in rows:
            bar.update(1)
            yield row
