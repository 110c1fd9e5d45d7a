"""Run `honed serve` as a real process on a free loopback port (shared by the tests and the benchmark)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

import honed

REPO = Path(honed.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(bundle: Path, *args: str, log: Path | None = None, start_timeout: float = 120.0,
                   threads: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `python -m honed serve BUNDLE --port P ARGS`, wait for /health, yield (url, process), stop it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "honed", "serve", str(bundle), "--port", str(port),
                                "--log-level", "warning", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"honed serve exited with {process.returncode}" +
                                   (f": {Path(log).read_text()[-2000:]}" if log else ""))
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"honed serve did not answer within {start_timeout} s")
            time.sleep(0.2)
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
