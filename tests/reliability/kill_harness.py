"""Kill ``honed train`` with SIGKILL at random and at chosen dangerous moments, resume it until it finishes,
and compare the result with an uninterrupted run.

Used by tests/reliability/test_kill_resume.py, and runnable as a script for the figures in
benchmarks/RELIABILITY.md (kill and resume)::

    python tests/reliability/kill_harness.py suite --seeds 10 --kills 2     # the full suite's figures
    python tests/reliability/kill_harness.py train ARGS...                   # `honed train ARGS` (used below)

Each run is ``python tests/reliability/kill_harness.py train ...``: the real CLI (``honed.cli.main``) in a
fresh process, on tiny data (2 colour classes, 24 PNGs at 16 px, timm's ``test_resnet``), CPU,
``--deterministic --checkpoint-every 1``. A kill is either a random moment (uniform over the time the
uninterrupted run spends training) or a fault point (``HONED_FAULT``, see ``honed.tracking.atomic``):

- ``atomic-rename:N``: the N-th atomic write of the process dies after its temp file is written, before the
  rename (mid-checkpoint write, mid-config write, ...);
- ``ledger-commit:N``: the N-th ledger transaction dies just before its COMMIT (``Ledger._transaction``
  calls ``fault_point("ledger-commit")``): the work is done, not committed.

After every kill the workspace is checked: ``PRAGMA integrity_check`` is ok, every ledger row's run folder
has a readable config.yaml, and a ``state.json`` (if any) names tensor files that load. The next attempt
resumes (``--resume NAME``) when the run has a config, else starts again with the same command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = Path(__file__).resolve().parents[2]
NAME = "kr"
PYTHON = sys.executable


@dataclass
class Kill:
    """One planned kill: a fault point (``HONED_FAULT`` spec) or a moment in seconds after the process starts."""

    fault: str = ""
    at_s: float = 0.0

    def describe(self) -> str:
        return self.fault or f"random at {self.at_s:.1f}s"


@dataclass
class Outcome:
    """What a killed-and-resumed run did, against the uninterrupted run with the same seed."""

    seed: int
    cache: str
    kills: list[str] = field(default_factory=list)  # the kills that landed, described
    missed: list[str] = field(default_factory=list)  # planned kills that did not land (the run finished first)
    attempts: int = 0  # processes started after the first kill (resumes or restarts)
    failures: list[str] = field(default_factory=list)  # a resume that failed, a bad workspace check
    identical: bool = False  # best and last weights bit-identical to the uninterrupted run's
    wall_s: float = 0.0


def make_data(root: Path) -> Path:
    """2 classes (reddish, bluish), 12 noisy 16 px PNGs each."""
    import numpy as np
    from PIL import Image

    for label, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for i in range(12):
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng(i + (100 if label == "blue" else 0)).integers(-30, 30, (16, 16, 3))
            Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)).save(path)
    return root


def train_args(data: Path, workspace: Path, *, seed: int, cache: str, epochs: int = 2) -> list[str]:
    return [str(data), "--model", "test_resnet", "--image-size", "16", "--epochs", str(epochs), "--batch-size", "4",
            "--lr", "3e-3", "--workers", "0", "--device", "cpu", "--seed", str(seed), "--cache", cache,
            "--checkpoint-every", "1", "--deterministic", "--name", NAME, "--workspace", str(workspace), "--quiet"]


def weights_digest(run_dir: Path) -> dict[str, str]:
    """sha256 over the tensors (names and bytes) of best.safetensors and last.safetensors."""
    from safetensors.torch import load_file

    digests = {}
    for name in ("best.safetensors", "last.safetensors"):
        tensors = load_file(str(run_dir / name))
        digest = hashlib.sha256()
        for key in sorted(tensors):
            digest.update(key.encode())
            digest.update(tensors[key].contiguous().numpy().tobytes())
        digests[name] = digest.hexdigest()
    return digests


def check_workspace(workspace: Path) -> list[str]:
    """Problems a kill may have left: a damaged ledger, a row naming a run without a readable config, a
    state.json naming files that do not load. Empty when all is well."""
    from safetensors.torch import load_file

    from honed.config import RunConfig
    from honed.tracking.ledger import LEDGER_FILENAME, Ledger

    problems = []
    if (workspace / LEDGER_FILENAME).exists():
        with Ledger(workspace) as ledger:
            check = ledger.integrity_check()
            if check != "ok":
                problems.append(f"ledger integrity_check: {check}")
            for record in ledger.runs():
                try:
                    RunConfig.from_yaml(workspace / record.path / "config.yaml")
                except Exception as error:  # any failure to read is the finding
                    problems.append(f"ledger row {record.name!r}: config.yaml unreadable ({error})")
    state_path = workspace / NAME / "state.json"
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
            for relative in (state.get("checkpoint") or {}).values():
                load_file(str(workspace / NAME / relative))
        except Exception as error:
            problems.append(f"state.json or a file it names is unreadable: {error}")
    return problems


def _env(fault: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("HONED_FAULT", None)
    if fault:
        env["HONED_FAULT"] = fault
    return env


def _start(args: list[str], fault: str = "") -> subprocess.Popen:
    """``honed train ARGS`` in its own session (so a kill reaches any worker too); stderr to a temp file,
    which a pipe nobody reads could fill and block."""
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen([PYTHON, str(Path(__file__).resolve()), "train", *args], env=_env(fault),
                               stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    process.errors_file = errors
    return process


def _stderr(process: subprocess.Popen) -> str:
    process.errors_file.seek(0)
    text = process.errors_file.read().decode(errors="replace")
    process.errors_file.close()
    return text


def run_uninterrupted(data: Path, workspace: Path, *, seed: int, cache: str) -> tuple[dict[str, str], float, float]:
    """The reference run: its weights' digests, its wall time and when it first wrote state.json (the start
    of the window random kills are drawn from)."""
    started = time.perf_counter()
    process = _start(train_args(data, workspace, seed=seed, cache=cache))
    first_state = 0.0
    while process.poll() is None:
        if not first_state and (workspace / NAME / "state.json").exists():
            first_state = time.perf_counter() - started
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed: {_stderr(process)[-2000:]}")
    return weights_digest(workspace / NAME), wall, first_state or wall / 2


def run_with_kills(data: Path, workspace: Path, *, seed: int, cache: str, kills: list[Kill],
                   reference: dict[str, str], max_attempts: int = 20) -> Outcome:
    """Start the run, kill it as planned, resume after each kill until it finishes, check and compare."""
    outcome = Outcome(seed=seed, cache=cache)
    started = time.perf_counter()
    plan = list(kills)
    for attempt in range(max_attempts):
        resuming = (workspace / NAME / "config.yaml").exists()
        args = (["--resume", NAME, "--workspace", str(workspace), "--quiet"] if resuming
                else train_args(data, workspace, seed=seed, cache=cache))
        kill = plan.pop(0) if plan else None
        process = _start(args, kill.fault if kill else "")
        if attempt:
            outcome.attempts += 1
        try:
            process.wait(timeout=kill.at_s if kill and not kill.fault else None)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own child's session, by its id
            process.wait()
        stderr = _stderr(process)
        if process.returncode == -signal.SIGKILL:
            outcome.kills.append(kill.describe() if kill else "unplanned SIGKILL")
            outcome.failures += [f"after kill {kill.describe()}: {p}" for p in check_workspace(workspace)]
            continue
        if process.returncode != 0:
            outcome.failures.append(f"attempt {attempt} ({'resume' if resuming else 'start'}) exited "
                                    f"{process.returncode}: {stderr[-1500:]}")
            break
        if kill is not None:
            outcome.missed.append(kill.describe())
        outcome.missed += [k.describe() for k in plan]
        outcome.failures += check_workspace(workspace)
        outcome.identical = weights_digest(workspace / NAME) == reference
        break
    else:
        outcome.failures.append(f"still not finished after {max_attempts} attempts")
    outcome.wall_s = time.perf_counter() - started
    return outcome


def plan_kills(rng: random.Random, count: int, window: tuple[float, float]) -> list[Kill]:
    """``count`` kills cycling through the three kinds: mid atomic write, mid ledger commit, random moment.
    A kill that misses (the run finishes first) ends the run, so fault points come first with small counts
    and random moments last, drawn from the first half of the training window."""
    faults = ["atomic", "ledger"]
    rng.shuffle(faults)
    kinds = [faults[i % 2] if i < count - count // 3 else "random" for i in range(count)]
    start, end = window
    kills = []
    for kind in kinds:
        if kind == "atomic":
            kills.append(Kill(fault=f"atomic-rename:{rng.randint(1, 12)}"))
        elif kind == "ledger":
            kills.append(Kill(fault=f"ledger-commit:{rng.randint(1, 5)}"))
        else:
            kills.append(Kill(at_s=rng.uniform(start, start + (end - start) / 2)))
    return kills


def suite(root: Path, seeds: list[int], kills_per_seed: int) -> list[Outcome]:
    """For each seed: an uninterrupted run, then a run killed ``kills_per_seed`` times and resumed. Seeds
    alternate the cached loader and the per-image DataLoader."""
    data = make_data(root / "data")
    outcomes = []
    for seed in seeds:
        cache = "on" if seed % 2 == 0 else "off"
        reference, wall, first_state = run_uninterrupted(data, root / f"ref-{seed}", seed=seed, cache=cache)
        kills = plan_kills(random.Random(seed), kills_per_seed, (first_state * 0.8, wall))
        outcomes.append(run_with_kills(data, root / f"killed-{seed}", seed=seed, cache=cache, kills=kills,
                                       reference=reference))
    return outcomes


def report(outcomes: list[Outcome], command: str, wall_s: float) -> str:
    """The figures as a markdown section."""
    kills = sum(len(o.kills) for o in outcomes)
    lines = [
        "## Kill and resume",
        "",
        f"Command: `{command}`",
        "",
        "| seed | loader | kills that landed | planned, missed | resumes | failures | bit-identical | wall s |",
        "|---:|---|---|---|---:|---:|---|---:|",
    ]
    for o in outcomes:
        lines.append(f"| {o.seed} | {'cached' if o.cache == 'on' else 'per-image'} | {'; '.join(o.kills) or '-'} | "
                     f"{'; '.join(o.missed) or '-'} | {o.attempts} | {len(o.failures)} | {'yes' if o.identical else 'NO'} | {o.wall_s:.0f} |")
    lines += ["", f"Total: {kills} kills over {len(outcomes)} seeds, "
              f"{sum(o.attempts for o in outcomes)} resumes, "
              f"{sum(o.attempts for o in outcomes) - sum(len(o.failures) for o in outcomes)} succeeded, "
              f"final weights bit-identical: {'yes' if all(o.identical for o in outcomes) else 'NO'}, "
              f"wall time {wall_s:.0f} s."]
    for o in outcomes:
        lines += [f"- seed {o.seed}: {failure}" for failure in o.failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(REPO))  # honed from this checkout, wherever the script is run from
    if argv[:1] == ["train"]:
        from honed.cli import main as honed_main

        sys.argv = ["honed", *argv]
        honed_main()
        return
    if argv[:1] == ["suite"]:
        import argparse

        parser = argparse.ArgumentParser(prog="kill_harness.py suite")
        parser.add_argument("--seeds", type=int, default=10)
        parser.add_argument("--first-seed", type=int, default=0, help="split the suite across processes")
        parser.add_argument("--kills", type=int, default=2)
        parser.add_argument("--out", type=Path, default=None)
        options = parser.parse_args(argv[1:])
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("HONED_CACHE", str(Path(tmp) / "cache"))
            outcomes = suite(Path(tmp), list(range(options.first_seed, options.first_seed + options.seeds)),
                             options.kills)
        text = report(outcomes, "python tests/reliability/kill_harness.py " + " ".join(argv),
                      time.perf_counter() - started)
        if options.out:
            options.out.write_text(text)
        print(text)
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
