"""`honed serve` as a child process on a free loopback port: for tests, benchmarks and scripts that need a
real server (its own process, its own threads) rather than the app in-process.

    with running_server("model-bundle", "--max-batch", "8") as (url, process):
        honed.Client(url).predict(["cat.jpg"])
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the child imports this honed, installed or not


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(bundle: str | Path, *args: str, log: Path | None = None, start_timeout: float = 120.0,
                   threads: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``python -m honed serve BUNDLE --port P ARGS``, wait until /health answers, yield (url, process);
    stop it on the way out. Its output is appended to ``log`` (else discarded); ``threads`` caps its OpenMP
    threads. RuntimeError, with the log's tail, if it exits or stays silent for ``start_timeout`` seconds."""
    port = free_port()
    paths = [str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "honed", "serve", str(bundle), "--port", str(port),
                                "--log-level", "warning", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, start_timeout, log)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            out.close()


def _wait_until_healthy(url: str, process: subprocess.Popen, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = f": {Path(log).read_text(errors='replace')[-2000:]}" if log else ""
            raise RuntimeError(f"honed serve exited with {process.returncode}{tail}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"honed serve did not answer within {timeout:g} s")
        time.sleep(0.2)
