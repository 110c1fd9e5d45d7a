"""Load test of `honed serve` on loopback: dynamic batching on (--max-batch 32) against off (--max-batch 1),
and a soak at twice the measured capacity with the server's memory sampled.

    python benchmarks/bench_serve.py compare --clients 32 --requests 800 --time-cap 90
    python benchmarks/bench_serve.py soak --minutes 10

The model is resnet18 at 64 px with random weights (trained 1 epoch on 16 synthetic images, exported as a
bundle): compute dominates each request, as with real models, unlike the tests' 16 px toy. Each of N client
threads sends single-image multipart requests back to back (closed loop) until the request count or the time
cap is reached; throughput counts answered requests per second, latency is per request, end to end. The
server and the clients share the machine: on a 2-core box the clients' own CPU use is part of the load.

Soak: a short closed-loop run (64 clients) measures capacity (requests/s with batching on); then an
open-loop client offers twice that rate for the soak's duration. The server must stay up (health 200 at the
end), answer only 200 or 429 (queue full, with Retry-After), and its RSS must grow less than 10% from the
first minute (after warm-up) to the last. Batches grow with the load, so a server can absorb twice its
closed-loop capacity without refusing anything; the 429 count says whether it had to.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from honed.serve.process import running_server  # noqa: E402


# ---------------------------------------------------------------------------------------------- setup


def make_bundle(work: Path, *, model: str = "resnet18", size: int = 64) -> Path:
    """A bundle of ``model`` at ``size`` px, random init, 1 epoch on 16 synthetic images (cached in ``work``)."""
    bundle = work / f"{model}-{size}-bundle"
    if (bundle / "bundle.json").is_file():
        return bundle
    from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.export.bundle import export_bundle
    from honed.training.fit import train

    rng = np.random.default_rng(0)
    for i in range(16):
        label = "warm" if i % 2 else "cool"
        path = work / "data" / label / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    config = RunConfig(name=f"{model}-{size}", workspace=str(work / "ws"),
                       data=DataConfig(source=str(work / "data"), val_fraction=0.25),
                       model=ModelConfig(name=model), preprocess=PreprocessConfig(image_size=size),
                       train=TrainConfig(epochs=1, batch_size=8, workers=0))
    run = train(config).run_dir
    return export_bundle(run, bundle).path


def test_image(size: int = 96) -> bytes:
    """A JPEG a little larger than the model's input, so each request also resizes (as real uploads do)."""
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


# ---------------------------------------------------------------------------------------------- load


def closed_loop(url: str, image: bytes, *, clients: int, requests: int, time_cap: float) -> dict:
    """N clients send requests back to back until ``requests`` are answered or ``time_cap`` passes."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    sent = iter(range(requests))
    stop_at = time.monotonic() + time_cap

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if next(sent, None) is None:
                        return
                start = time.perf_counter()
                try:
                    status = http.post("/predict", files=[("files", ("img.jpg", image, "image/jpeg"))]).status_code
                except httpx.TransportError:
                    status = 0
                took = time.perf_counter() - start
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(took)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"clients": clients, "answered": int(len(lat)), "seconds": round(wall, 2),
            "throughput": round(len(lat) / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None, "statuses": statuses}


def batch_stats(url: str) -> dict:
    """Mean and largest batch from the server's Prometheus histogram."""
    text = httpx.get(url + "/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("honed_batch_size")}
    count, total = values.get("honed_batch_size_count", 0), values.get("honed_batch_size_sum", 0)
    return {"model_calls": int(count), "mean_batch": round(total / count, 2) if count else 0}


def compare(bundle: Path, *, clients: int, requests: int, time_cap: float, log: Path | None = None) -> dict:
    image = test_image()
    results = {}
    for label, batch in (("batching on (max-batch 32)", "32"), ("batching off (max-batch 1)", "1")):
        with running_server(bundle, "--device", "cpu", "--max-batch", batch, "--max-wait-ms", "5", "--max-queue", "1024",
                            log=log, start_timeout=180) as (url, _):
            closed_loop(url, image, clients=4, requests=40, time_cap=30)  # warm-up, not counted
            load = load_average()
            row = closed_loop(url, image, clients=clients, requests=requests, time_cap=time_cap)
            row.update(batch_stats(url), load_before=load)
            results[label] = row
    on, off = results["batching on (max-batch 32)"], results["batching off (max-batch 1)"]
    results["speedup"] = round(on["throughput"] / off["throughput"], 2) if off["throughput"] else None
    return results


def soak(bundle: Path, *, seconds: float, sample_every: float = 5.0, log: Path | None = None,
         capacity_requests: int = 600) -> dict:
    """Open-loop load at 2x the measured capacity for ``seconds``; RSS of the server sampled."""
    image = test_image()
    with running_server(bundle, "--device", "cpu", "--max-batch", "32", "--timeout-s", "30", log=log,
                            start_timeout=180) as (url, process):
        closed_loop(url, image, clients=4, requests=40, time_cap=30)
        capacity = closed_loop(url, image, clients=64, requests=capacity_requests, time_cap=60)["throughput"]
        rate = 2 * capacity
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        local = threading.local()
        samples: list[tuple[float, float]] = []

        def one() -> None:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=url, timeout=60)
            try:
                status = local.http.post("/predict", files=[("files", ("img.jpg", image, "image/jpeg"))]).status_code
            except httpx.TransportError:
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

        start = time.monotonic()
        next_sample = start
        with ThreadPoolExecutor(max_workers=64) as pool:
            n = 0
            while (now := time.monotonic()) - start < seconds:
                if process.poll() is not None:
                    break
                if now >= next_sample:
                    samples.append((round(now - start, 1), round(rss_mib(process.pid), 1)))
                    next_sample += sample_every
                due = start + n / rate
                if now < due:
                    time.sleep(min(due - now, 0.05))
                    continue
                if pool._work_queue.qsize() < 256:  # a client that cannot keep up drops, not queues forever
                    pool.submit(one)
                n += 1
        alive = process.poll() is None
        health = httpx.get(url + "/health", timeout=10).status_code if alive else None
        final_rss = rss_mib(process.pid) if alive else float("nan")
        batches = batch_stats(url) if alive else {}
    rss = np.array([r for _, r in samples])
    times = np.array([t for t, _ in samples])
    minute = min(60.0, seconds / 4)
    early = rss[(times >= minute / 2) & (times < minute / 2 + minute)]  # after warm-up
    late = rss[times >= times.max() - minute] if len(times) else rss
    growth = float(np.median(late) / np.median(early) - 1) if len(early) and len(late) else float("nan")
    return {"seconds": seconds, "capacity_rps": capacity, "offered_rps": round(rate, 1), "statuses": statuses,
            "alive": alive, "health": health, "rss_mib_early": round(float(np.median(early)), 1),
            "rss_mib_late": round(float(np.median(late)), 1), "rss_mib_max": round(float(rss.max()), 1),
            "rss_mib_final": round(final_rss, 1), "rss_growth": round(growth, 4), "load": load_average(), **batches,
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["compare", "soak"])
    parser.add_argument("--bundle", type=Path, help="a bundle to serve; default: build resnet18 at 64 px")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "honed-bench-serve")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--time-cap", type=float, default=90.0, help="seconds per load run")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or make_bundle(args.work)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {load_average()}")
    if args.mode == "compare":
        result = compare(bundle, clients=args.clients, requests=args.requests, time_cap=args.time_cap,
                         log=args.work / "server.log")
    else:
        result = soak(bundle, seconds=args.minutes * 60, log=args.work / "server.log")
        result["samples"] = result["samples"][:: max(1, len(result["samples"]) // 20)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
