"""Service configuration from environment variables (``ADAFOCUS_*``), via pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field is an environment variable: ``model_repo`` -> ``ADAFOCUS_MODEL_REPO``."""

    model_config = SettingsConfigDict(env_prefix="ADAFOCUS_", env_file=None)

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    # 60 s: above the longest request measured (p99 41 s, 1080p every frame at 16 concurrent
    # uploads on 2 cores, docs/benchmarks/realsize.md) and the decode limit (decode_timeout_s).
    graceful_shutdown_s: float = Field(
        60.0,
        gt=0,
        description="on SIGTERM (or Ctrl-C) new connections are refused and requests in flight get this long "
        "to finish before they are cancelled; then the decoders close and the process exits 0",
    )
    model_repo: Path = Field(Path("model_repo"), description="the model repository to serve")
    models: list[str] = Field(default_factory=list, description="pipelines to load (empty: every one found)")
    default_model: str = Field("adafocus_v2", description="the pipeline used when a request names none")
    providers: list[str] = Field(
        default_factory=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference (unavailable ones are skipped)",
    )
    trt_cache_dir: Path | None = Field(None, description="TensorRT engine and timing cache directory")
    # Off: TensorRT FP32 answers as the CPU does to within float noise; FP16 is faster on the
    # GPU but moves scores (the warm-up's reference check, sized for FP16, still guards it).
    trt_fp16: bool = Field(
        False,
        description="let TensorRT build its engines in FP16 (mixed precision; engines cached apart under "
        "TRT_CACHE_DIR/fp16); only the TensorRT provider reads it",
    )
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads per session (0: its default)")
    ort_spinning: bool = Field(
        False, description="let ONNX Runtime's idle threads spin (off: they leave the cores to decoding)"
    )
    ort_arena_shrinkage: bool = Field(
        True,
        description="after each batched step, give ONNX Runtime's unused CPU arena memory back to the system "
        "(off: the arena keeps the peak of the largest batch served)",
    )
    # On: the full-frame ResNet-50's process tree peaked at 1031-1053 MB under 16 concurrent
    # 1080p uploads, 693-714 MB with it, at the same videos/s (service/memory.py).
    release_freed_memory: bool = Field(
        True,
        description="tell the C library (glibc) to give freed blocks of 1 MiB or more back to the system at once, in "
        "the server and its decoder processes (off: freed blocks stay resident until a trim)",
    )
    # 2 on 2 cores: docs/benchmarks/decoder-sizing.md (4 serve 25-30% more 1080p videos/s but
    # pass the 1 GB memory budget; each process reads with one thread).
    decode_workers: int = Field(2, ge=1, description="decoder processes (a hostile file cannot crash the server)")
    # 2: at 16 concurrent 1080p early-exit uploads on 2 cores, the process tree's peak fell
    # from 1.5 GB to 0.9 GB at the same videos/s (docs/benchmarks/realsize.md).
    decoder_max_open: int = Field(
        2,
        ge=0,
        description="videos holding an open decoder at once in each decoder process (about 30 MB each at 1080p "
        "between early-exit stages); more wait for a free one (0: no bound)",
    )
    # Off by default: training and serving see the same pixels. "all" cut H.264 decoding CPU by
    # a third at 1080p for a mean difference of half a grey level at the model's size
    # (docs/benchmarks/loop-filter.md).
    decode_skip_loop_filter: Literal["none", "bidir", "all"] = Field(
        "none",
        description="FFmpeg's decoder shortcut: skip the deblocking filter on B-frames (bidir) or on every frame "
        "(all); faster decoding, pixels that differ slightly from the training decoder's (none: bit-exact)",
    )
    # Off: decoding stays on the CPU, bit-exact with training. Unmeasured (no GPU was lent to
    # this project's sessions): what NVDEC saves and how far its NV12 frames move the pixels.
    decode_hwaccel: str | None = Field(
        None,
        description="FFmpeg hardware device to decode on (cuda: NVDEC; one of PyAV's hwdevices_available()), with "
        "software decoding as the fallback; a device that cannot be created is warned about once per decoder "
        "process and decoding goes on in software (unset: software only)",
    )
    max_upload_mb: float = Field(200.0, gt=0, description="largest accepted upload (413 above)")
    max_duration_s: float = Field(600.0, gt=0, description="longest accepted video (422 above)")
    max_pixels: int = Field(3840 * 2160, gt=0, description="largest accepted frame (422 above)")
    decode_timeout_s: float = Field(30.0, gt=0, description="decoding wall-time limit (504 above)")
    # The decode budget stops amplification: a tiny file that makes the decoder work through
    # thousands of large frames (one keyframe, a long static 4K video) to reach its samples.
    decode_budget_mpx: float = Field(
        6000.0, gt=0, description="most megapixels one request may decode, sampled or not (422 above)"
    )
    decoder_max_videos: int = Field(
        1000, ge=1, description="a decoder process is replaced (when idle) after this many videos"
    )
    decoder_max_rss_mb: float = Field(
        1024.0, gt=0, description="a decoder process is replaced (when idle) once its resident memory passes this (MiB)"
    )
    upload_idle_timeout_s: float = Field(
        10.0, gt=0, description="an upload that sends nothing for this long is refused (408)"
    )
    upload_min_kb_per_s: float = Field(
        64.0, ge=0, description="an upload slower than this on average, past its first idle timeout, is refused (408)"
    )
    max_uploads: int = Field(
        16,
        ge=1,
        description="uploads being received at once; a new one cuts the slowest under upload_min_kb_per_s (408), "
        "else gets 503 + Retry-After",
    )
    upload_memory_mb: float = Field(
        800.0, gt=0, description="upload bytes held in memory at once, all requests together (503 past it)"
    )
    default_exit: str = Field(
        "balanced",
        description="operating point used when a request names none; a model without it runs every frame",
    )
    max_batch: int = Field(32, ge=1, description="most frames in one batched step (dynamic batching)")
    # 10 rather than 2 on CPU: bigger batches cost less CPU per frame, and the wait only runs
    # while clips that can still send a row are missing (A/B on 2 cores, c16: balanced exit
    # 87.9 -> 97.1 videos/s, full-frame 36.4 -> 40.8; c4: 68.1 -> 70.7 and 30.1 -> 31.8).
    max_wait_ms: float = Field(10.0, ge=0, description="longest wait for more frames before a batched step runs")
    max_in_flight: int = Field(
        32,
        ge=1,
        description="classify requests decoded and classified at once, counted once their upload is complete; "
        "more get 503 + Retry-After",
    )
    ready_when: Literal["default", "all", "any"] = Field(
        "default",
        description="/readyz is 200 when the default model is served (default), every model (all) or one (any)",
    )
    public_endpoints: list[Literal["metrics", "docs", "models"]] = Field(
        default_factory=list,
        description="with an API key set, what stays open without it: metrics (/metrics), docs (/docs, /redoc, "
        "/openapi.json, /docs/assets), models (/v1/models and the model list of /readyz); "
        "/healthz and /readyz's status always are",
    )
    api_key: SecretStr | None = Field(
        None,
        description="if set, /v1/classify, /classify, /v1/models, /metrics, the docs and /readyz's model list "
        "need 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (those not named in public_endpoints); "
        "empty: no key",
    )

    @field_validator("decode_hwaccel")
    @classmethod
    def _known_device(cls, device: str | None) -> str | None:
        """A device type this FFmpeg build knows (a typo would silently decode in software)."""
        if device is None or device == "":
            return None
        from av.codec.hwaccel import hwdevices_available

        known = hwdevices_available()
        if device not in known:
            raise ValueError(f"{device!r} is not a hardware device of this FFmpeg build (it has: {', '.join(known)})")
        return device

    @field_validator("api_key")
    @classmethod
    def _usable_key(cls, key: SecretStr | None) -> SecretStr | None:
        """An empty key sets none (Compose passes ``${ADAFOCUS_API_KEY:-}``), so an empty
        ``X-API-Key:`` never passes; a key with spaces around it is refused: HTTP strips them
        from headers, so no client could present it."""
        if key is None or key.get_secret_value() == "":
            return None
        if key.get_secret_value() != key.get_secret_value().strip():
            raise ValueError("ADAFOCUS_API_KEY starts or ends with whitespace, which no HTTP header can carry")
        return key
