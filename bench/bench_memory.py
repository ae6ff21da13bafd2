"""Memory and upload admission under hostile load: peak resident memory against the budget.

    python -m bench.bench_memory          # writes docs/benchmarks/memory.{json,md}

Starts ``python -m service`` on the shipped model repository (CPU, the default settings but
for the provider) in a subprocess and samples the resident memory of its process tree (the
server and its decoder processes, from /proc) every 50 ms through two phases:

* **large uploads**: 16 concurrent uploads of a 1080p clip padded to near the upload limit
  (an MP4 with a large ``free`` box after its ``moov``: FFmpeg skips it, the server and the
  decoder hold all of it), half as raw ``video/mp4`` bodies with a ``Content-Length``, half as
  chunked multipart; each refused one (503) retries after its ``Retry-After``, up to 30
  times. Meanwhile two loops of normal requests (small clips).
* **slow uploads**: 32 connections that declare 1000 bytes and send one per second (the
  slow-loris of issue 22) for 20 s, while a normal client sends requests one after another.

Reports the base (the tree's memory once ready and warm), the peak of the sampled sums, the
budget ``base + decode_workers x decoder_max_rss_mb + 2 x upload_memory_mb`` (the server's
copy of the uploads and the decoders'), how many uploads got a 503 and what the normal
requests got in each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import struct
import time
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import numpy as np

from bench.bench_service import Poller, free_port, start_server
from bench.bench_service import _descendants as descendants
from service.settings import Settings
from training.engine.machine import cpu_name

OUT_DIR = Path("docs/benchmarks")
LARGE_UPLOADS = 16
SLOW_CONNECTIONS = 32
SLOW_SECONDS = 20.0
BOUNDARY = "bench-memory-boundary"
SLOW_HEAD = b"POST /v1/classify HTTP/1.1\r\nHost: bench\r\nContent-Type: video/mp4\r\nContent-Length: 1000\r\n\r\n"


def encode_clip(width: int, height: int, frames: int, fps: int = 24, seed: int = 0) -> bytes:
    """An H.264 MP4 of moving noise blocks (cheap to encode at 1080p with ultrafast)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        blocks = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        for index in range(frames):
            image = np.roll(blocks, index, axis=1).repeat(16, 0).repeat(16, 1)[:height, :width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def padded(clip: bytes, size: int) -> bytes:
    """``clip`` followed by an MP4 ``free`` box, ``size`` bytes in all."""
    pad = size - len(clip)
    return clip + struct.pack(">I", pad) + b"free" + bytes(pad - 8)


# -- memory of the service's process tree ------------------------------------------------------
def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # ended (a replaced decoder)
    return 0


def budget_mib(base_mib: float, settings: Settings) -> float:
    """The memory budget in MiB: ``base + decode_workers x decoder_max_rss_mb`` (MiB) ``+ 2 x
    upload_memory_mb`` (MB, decimal: the upload settings count bytes by 1e6)."""
    decoders = settings.decode_workers * settings.decoder_max_rss_mb
    return base_mib + decoders + 2 * settings.upload_memory_mb * 1e6 / 2**20


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every process under it, now, in MiB."""
    return sum(_rss_kb(p) for p in [pid, *descendants(pid)]) / 1024


class Sampler(Poller):
    """Samples :func:`tree_rss_mib` every 50 ms in a thread; the peak by phase."""

    def __init__(self, pid: int) -> None:
        super().__init__(0.05)
        self.pid, self.phase, self.peaks = pid, "start", {}

    def sample(self) -> None:
        rss = tree_rss_mib(self.pid)
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)


# -- clients ---------------------------------------------------------------------------------
def _multipart(data: bytes, chunk: int = 1 << 20):
    async def body():
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="x.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        view = memoryview(data)
        for at in range(0, len(data), chunk):
            yield bytes(view[at : at + chunk])
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    return body()


async def large_upload(session: aiohttp.ClientSession, url: str, data: bytes, chunked: bool) -> dict:
    """Upload until it is served (retrying each 503 after its Retry-After, 30 times at most)."""
    refused = 0
    for _ in range(31):
        if chunked:
            body, headers = _multipart(data), {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        else:
            body, headers = data, {"content-type": "video/mp4"}
        try:
            async with session.post(url, data=body, headers=headers, expect100=True) as response:
                await response.read()
                status, retry = response.status, float(response.headers.get("retry-after", "1"))
        except aiohttp.ClientError:
            status, retry = -1, 1.0  # the server closed the connection while the body was being sent
        if status not in (503, -1):
            return {"status": status, "refused": refused}
        refused += 1
        await asyncio.sleep(retry)
    return {"status": status, "refused": refused}


async def normal_requests(session: aiohttp.ClientSession, url: str, clip: bytes, stop: asyncio.Event) -> list:
    """(status, seconds) of small requests sent one after another until ``stop``."""
    answers = []
    while not stop.is_set():
        form = aiohttp.FormData()
        form.add_field("video", clip, filename="x.mp4", content_type="video/mp4")
        started = time.perf_counter()
        async with session.post(url, data=form) as response:
            await response.read()
            answers.append((response.status, time.perf_counter() - started))
    return answers


async def slow_upload(port: int, seconds: float) -> str:
    """One slow-loris connection: declares 1000 bytes, sends one a second; how it ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(SLOW_HEAD)
    ended = asyncio.get_running_loop().time() + seconds
    try:
        while asyncio.get_running_loop().time() < ended:
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
                return line.decode(errors="replace").split(" ", 2)[1] if line else "closed"
            except TimeoutError:
                writer.write(b"x")
                await writer.drain()
        return "still open"
    except (ConnectionError, IndexError):
        return "reset"
    finally:
        writer.close()


def summary(answers: list) -> dict:
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    seconds = sorted(s for status, s in answers if status == 200)
    p95 = seconds[int(0.95 * (len(seconds) - 1))] if seconds else None
    return {
        "requests": len(answers),
        "statuses": statuses,
        "p50_ms": 1e3 * statistics.median(seconds) if seconds else None,
        "p95_ms": 1e3 * p95 if p95 is not None else None,
    }


async def phase_large(port: int, large: bytes, small: bytes) -> dict:
    url = f"http://127.0.0.1:{port}/v1/classify"
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        stop = asyncio.Event()
        normal = [asyncio.create_task(normal_requests(session, url, small, stop)) for _ in range(2)]
        started = time.perf_counter()
        uploads = await asyncio.gather(
            *(large_upload(session, url, large, chunked=i % 2 == 1) for i in range(LARGE_UPLOADS))
        )
        seconds = time.perf_counter() - started
        stop.set()
        answers = [a for task in normal for a in await task]
    return {
        "seconds": seconds,
        "uploads": uploads,
        "served": sum(u["status"] == 200 for u in uploads),
        "refusals": sum(u["refused"] for u in uploads),
        "normal": summary(answers),
    }


async def phase_slow(port: int, small: bytes) -> dict:
    url = f"http://127.0.0.1:{port}/v1/classify"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        slow = [asyncio.create_task(slow_upload(port, SLOW_SECONDS)) for _ in range(SLOW_CONNECTIONS)]
        await asyncio.sleep(1.5)  # all connected and past the grace before an upload can be cut
        stop = asyncio.Event()
        normal = asyncio.create_task(normal_requests(session, url, small, stop))
        await asyncio.sleep(SLOW_SECONDS - 3)
        stop.set()
        answers = await normal
        ends = await asyncio.gather(*slow)
    endings: dict[str, int] = {}
    for end in ends:
        endings[end] = endings.get(end, 0) + 1
    return {"slow_connections": endings, "normal": summary(answers)}


async def warm(port: int, small: bytes) -> None:
    url = f"http://127.0.0.1:{port}/v1/classify"
    async with aiohttp.ClientSession() as session:
        stop = asyncio.Event()
        task = asyncio.create_task(normal_requests(session, url, small, stop))
        await asyncio.sleep(2.0)
        stop.set()
        await task


def write(results: dict) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    s, large, slow = results["settings"], results["large_uploads"], results["slow_uploads"]
    budget = results["budget_mib"]
    peak_large, peak_slow = results["peaks_mib"]["large uploads"], results["peaks_mib"]["slow uploads"]
    lines = [
        "# Memory and upload admission under hostile load",
        "",
        f"`python -m bench.bench_memory` on {results['machine']}; CPU provider, the shipped model, the default",
        f"settings (decode_workers {s['decode_workers']}, max_upload_mb {s['max_upload_mb']:g}, upload_memory_mb "
        f"{s['upload_memory_mb']:g}, max_uploads {s['max_uploads']},",
        f"max_in_flight {s['max_in_flight']}, decoder_max_rss_mb {s['decoder_max_rss_mb']:g}, "
        f"upload_idle_timeout_s {s['upload_idle_timeout_s']:g}, upload_min_kb_per_s {s['upload_min_kb_per_s']:g}).",
        "Resident memory of the server and its decoder processes, summed, sampled every 50 ms.",
        "",
        "| | MiB |",
        "|---|---|",
        f"| base (ready, after 2 s of small requests) | {results['base_mib']:.0f} |",
        f"| budget: base + {s['decode_workers']} x {s['decoder_max_rss_mb']:g} MiB + 2 x {s['upload_memory_mb']:g} MB "
        f"| {budget:.0f} |",
        f"| peak, large uploads | {peak_large:.0f} ({100 * peak_large / budget:.0f}% of the budget) |",
        f"| peak, slow uploads | {peak_slow:.0f} |",
        "",
        f"- **Large uploads**: {LARGE_UPLOADS} concurrent uploads of a 1080p clip padded to "
        f"{results['large_upload_mb']:.0f} MB (half raw, half chunked",
        f"  multipart), each retrying after its 503: {large['served']} of {LARGE_UPLOADS} served in "
        f"{large['seconds']:.1f} s, after {large['refusals']} refusals in all (503, or",
        f"  the connection closed while sending). Normal requests meanwhile: {_normal(large['normal'])}.",
        f"- **Slow uploads**: {SLOW_CONNECTIONS} connections declaring 1000 bytes and sending 1 byte/s for "
        f"{SLOW_SECONDS:g} s; they ended as",
        f"  {slow['slow_connections']}. Normal requests meanwhile: {_normal(slow['normal'])}.",
        "",
        "## The issue's aims",
        "",
        "| aim | figure | verdict |",
        "|---|---|---|",
        *(f"| {aim} | {figure} | {'met' if met else '**NOT met**'} |" for aim, figure, met in verdicts(results)),
        "",
    ]
    (OUT_DIR / "memory.md").write_text("\n".join(lines))


def _ok_share(normal: dict) -> float:
    """The share of normal requests answered 200 (0 when none was made)."""
    return normal["statuses"].get("200", 0) / normal["requests"] if normal["requests"] else 0.0


def verdicts(results: dict) -> list[tuple[str, str, bool]]:
    """Issue 22's aims, each as (aim, figure, met): the process tree stays within its memory
    budget, and normal clients keep being served during hostile uploads."""
    budget, peaks = results["budget_mib"], results["peaks_mib"]
    peak = max(peaks.values())
    large, slow = results["large_uploads"], results["slow_uploads"]
    return [
        ("peak resident memory within the budget", f"{peak / budget:.2f}x of the budget", peak <= budget),
        (
            "every large upload served (after retries)",
            f"{large['served']} of {len(large['uploads'])}",
            large["served"] == len(large["uploads"]),
        ),
        (
            "normal requests answered 200 during the large uploads",
            f"{_ok_share(large['normal']):.0%}",
            _ok_share(large["normal"]) == 1.0,
        ),
        (
            "normal requests answered 200 during the slow uploads (before: 503s for 20 s)",
            f"{_ok_share(slow['normal']):.0%}",
            _ok_share(slow["normal"]) == 1.0,
        ),
    ]


def _normal(normal: dict) -> str:
    p50 = f", p50 {normal['p50_ms']:.0f} ms, p95 {normal['p95_ms']:.0f} ms" if normal["p50_ms"] is not None else ""
    return f"{normal['requests']} requests, statuses {normal['statuses']}{p50}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--report-only", action="store_true", help="rewrite memory.md from memory.json, no run")
    args = parser.parse_args()
    if args.report_only:
        write(json.loads((OUT_DIR / "memory.json").read_text()))
        return 0
    settings = Settings()
    small = encode_clip(128, 128, 16)
    large = padded(encode_clip(1920, 1080, 24), int(settings.max_upload_mb * 1e6) - 1_000_000)
    port = free_port()
    server = start_server(args.repo, port, threads=0)
    try:
        asyncio.run(warm(port, small))
        base = tree_rss_mib(server.pid)
        with Sampler(server.pid) as sampler:
            sampler.phase = "large uploads"
            large_results = asyncio.run(phase_large(port, large, small))
            sampler.phase = "slow uploads"
            slow_results = asyncio.run(phase_slow(port, small))
    finally:
        server.terminate()
        server.wait(30)
    chosen = ("decode_workers", "max_upload_mb", "upload_memory_mb", "max_uploads", "max_in_flight")
    results = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "settings": {
            **{name: getattr(settings, name) for name in chosen},
            "decoder_max_rss_mb": settings.decoder_max_rss_mb,
            "upload_idle_timeout_s": settings.upload_idle_timeout_s,
            "upload_min_kb_per_s": settings.upload_min_kb_per_s,
        },
        "base_mib": base,
        "budget_mib": budget_mib(base, settings),
        "large_upload_mb": len(large) / 1e6,
        "peaks_mib": sampler.peaks,
        "large_uploads": large_results,
        "slow_uploads": slow_results,
    }
    write(results)
    print(json.dumps({k: results[k] for k in ("base_mib", "budget_mib", "peaks_mib")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
