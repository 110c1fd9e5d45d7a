"""Rows per second that 8 processes write into one ledger, embedded SQLite against PostgreSQL.

Each process does what a training run does to the ledger, in a loop for ``--seconds``: open a Ledger, claim a
new name (insert), update it twice (epochs), mark it done with a score: 4 write transactions per row, a new
connection each time (as honed opens one per operation). The PostgreSQL server is a throwaway one started
with tests/postgres.py, with fsync on (as a real server). Prints one line per backend, with the load average.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_ledger.py --seconds 20
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import multiprocessing
import os
from pathlib import Path
import tempfile
import time

PROCESSES = 8


def _writer(index: int, workspace: str, seconds: float, url: str, counts) -> None:
    from honed.tracking.ledger import Ledger, RunRecord

    deadline, rows, kwargs = time.monotonic() + seconds, 0, ({"url": url} if url else {})
    while time.monotonic() < deadline:
        name = f"w{index}-{rows}"
        with Ledger(workspace, **kwargs) as ledger:
            ledger.insert(RunRecord(name=name, model="resnet18", metric="accuracy", path=name))
        for epoch in range(2):
            with Ledger(workspace, **kwargs) as ledger:
                ledger.upsert(replace(ledger.get(name), metrics={"epoch": epoch, "accuracy": 0.5}))
        with Ledger(workspace, **kwargs) as ledger:
            ledger.upsert(replace(ledger.get(name), status="done", score=0.5))
        rows += 1
    counts[index] = rows


def measure(url: str, seconds: float) -> tuple[int, float]:
    """Rows written by PROCESSES writers in ``seconds``; (rows, wall seconds)."""
    from honed.tracking.ledger import Ledger

    workspace, kwargs = tempfile.mkdtemp(prefix="honed-bench-ledger-"), ({"url": url} if url else {})
    Ledger(workspace, **kwargs).close()  # create (migrate) once, as a workspace in use is
    context = multiprocessing.get_context("fork")
    counts = context.Array("i", PROCESSES)
    children = [context.Process(target=_writer, args=(i, workspace, seconds, url, counts)) for i in range(PROCESSES)]
    start = time.monotonic()
    for child in children:
        child.start()
    for child in children:
        child.join()
    wall = time.monotonic() - start
    assert all(child.exitcode == 0 for child in children), [child.exitcode for child in children]
    with Ledger(workspace, **kwargs) as ledger:
        stored = sum(1 for r in ledger.runs() if r.status == "done")
    assert stored == sum(counts), (stored, sum(counts))  # no lost row
    return stored, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sqlite-only", action="store_true", help="e.g. for the ledger before SQLAlchemy, run "
                        "with PYTHONPATH pointing at that checkout")
    args = parser.parse_args()
    import sys

    sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.postgres; honed from PYTHONPATH
    os.environ.pop("HONED_LEDGER", None)
    backends = [("sqlite", "")]
    server = None
    if not args.sqlite_only:
        from tests.postgres import PostgresServer, unavailable

        if unavailable():
            raise SystemExit(f"no PostgreSQL here: {unavailable()}")
        server = PostgresServer.start(fsync=True)
        backends.append(("postgresql", server.new_database()))
    try:
        for label, url in backends:
            before = os.getloadavg()[0]
            rows, wall = measure(url, args.seconds)
            print(f"{label}: {PROCESSES} processes, {rows} rows ({4 * rows} write transactions) in {wall:.1f} s = "
                  f"{rows / wall:.1f} rows/s; load average {before:.2f} before, {os.getloadavg()[0]:.2f} after",
                  flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
