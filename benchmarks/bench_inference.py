"""Inference images/s of the eager eval-mode model vs its BatchNorm-fused copy vs TorchScript vs ONNX Runtime.

    nice python benchmarks/bench_inference.py                      # CPU: resnet18, efficientnet-lite0, 224 px
    nice python benchmarks/bench_inference.py --threads 1 --rounds 3   # as run for results_inference.md (busy CPU)
    python benchmarks/bench_inference.py --device cuda                     # + bf16, channels_last, torch.compile

Every variant of one model is built from the same eval-mode network: ``fused`` is honed's
``fuse_batchnorm`` copy, ``torchscript`` and ``onnxruntime`` are the files honed's exporters
(``honed.export.formats``) write from the fused model, as ``honed export`` does. The contenders are timed in
interleaved rounds (round r times every variant once, then round r+1), each round runs a variant for at least
``--seconds`` of wall time after a warm-up, and the table shows the median round; the load average is read
next to every row, since the machine's cores may be shared. Parity is the max |difference| of each variant's
logits from the eager fp32 model's on the same random batch.

tf_efficientnet_lite0 loads honed's pip-shipped ImageNet weights when the package is installed (so its
BatchNorm statistics are real); resnet18 has random weights with BatchNorm statistics calibrated on a few
random batches (so fusion folds non-trivial statistics; speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from honed.export.formats import INPUT_NAME, export_onnx, export_torchscript  # noqa: E402
from honed.export.fuse import fuse_batchnorm  # noqa: E402
from honed.models.backbones import create_backbone_with_pretrained  # noqa: E402

Runner = Callable[[torch.Tensor], np.ndarray]
WARMUP_CALLS = 2  # TorchScript's profiling executor optimizes the graph on the second call


def load_average() -> str:
    """The 1-minute load average (the machine may be shared: figures under load are lower)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def build(name: str, pretrained: bool) -> tuple[nn.Module, str]:
    """The eval-mode network and where its weights came from."""
    torch.manual_seed(0)
    model = create_backbone_with_pretrained(name, 1000, pretrained=pretrained, weights=None)
    source = "ImageNet (pip-shipped)" if pretrained else "random, BN statistics calibrated"
    if not pretrained:  # default running stats (0 mean, 1 var) would make the folded norms near no-ops
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(8, 3, 64, 64))
    return model.eval(), source


def variants(model: nn.Module, size: int, device: str, folder: Path) -> tuple[dict[str, Runner], dict[str, str]]:
    """name -> callable returning logits as a float32 array, and notes per variant."""
    fused = fuse_batchnorm(model)
    notes = {"fused": f"{fused.fused_pairs} conv/BN pairs folded"}
    example = torch.randn(2, 3, size, size)
    runners: dict[str, Runner] = {}
    dev = torch.device(device)
    eager, fused_model = model.to(dev), fused.model.to(dev)

    def torch_runner(net: Callable, *, bf16: bool = False, channels_last: bool = False) -> Runner:
        def run(x: torch.Tensor) -> np.ndarray:
            x = x.to(dev, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = net(x)
            return out.float().cpu().numpy()
        return run

    runners["eager"] = torch_runner(eager)
    runners["fused"] = torch_runner(fused_model)
    ts_path = folder / "model.pt"
    ts_report = export_torchscript(fused.model.cpu(), example, ts_path)
    notes["torchscript"] = f"traced from fused; export parity passed={ts_report.passed}"
    scripted = torch.jit.load(str(ts_path), map_location=dev)
    runners["torchscript"] = torch_runner(scripted)
    onnx_path = folder / "model.onnx"
    onnx_report = export_onnx(fused.model.cpu(), example, onnx_path)
    fused_model.to(dev)
    runners["onnxruntime"], notes["onnxruntime"] = ort_runner(onnx_path, device)
    notes["onnxruntime"] += f"; export parity passed={onnx_report.passed}"
    if dev.type == "cuda":  # the settings a GPU deployment would use
        cl_fused = fuse_batchnorm(model).model.to(dev).to(memory_format=torch.channels_last)
        runners["fused bf16 channels_last"] = torch_runner(cl_fused, bf16=True, channels_last=True)
        compiled = torch.compile(cl_fused)
        runners["fused bf16 channels_last compiled"] = torch_runner(compiled, bf16=True, channels_last=True)
        notes["fused bf16 channels_last compiled"] = "torch.compile (default mode)"
    return runners, notes


def ort_runner(path: Path, device: str) -> tuple[Runner, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads torch gets
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), options, providers=providers)

    def run(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {INPUT_NAME: x.cpu().numpy()})[0]

    return run, f"providers {session.get_providers()[0]}, {options.intra_op_num_threads} intra-op threads"


def time_round(run: Runner, batch: torch.Tensor, seconds: float) -> float:
    """Images/s of one round: run the batch repeatedly for at least ``seconds`` (at least one call)."""
    calls, start = 0, time.perf_counter()
    while calls < 1 or time.perf_counter() - start < seconds:
        run(batch)  # every runner returns a CPU array: the device work is finished when it returns
        calls += 1
    return calls * len(batch) / (time.perf_counter() - start)


def measure(runners: dict[str, Runner], batch: torch.Tensor, rounds: int, seconds: float) -> dict[str, list[float]]:
    for run in runners.values():  # warm-up: allocator, oneDNN kernels, TorchScript profiling runs, compile
        for _ in range(WARMUP_CALLS):
            run(batch)
    results: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            results[name].append(time_round(run, batch, seconds))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,tf_efficientnet_lite0", help="comma-separated timm names")
    parser.add_argument("--sizes", default="224", help="comma-separated image sizes")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds per variant (median)")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum wall time of one timed round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (adds bf16 + channels_last + compile rows)")
    parser.add_argument("--random-weights", action="store_true", help="no pip-shipped weights, random for all")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_inference.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch here")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (platform.processor() or "CPU")
    started, load_start = time.perf_counter(), load_average()
    header = ("| model | px | batch | variant | images/s (median) | x eager | rounds min-max | max abs diff vs eager "
              "| load avg |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    notes_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            pretrained = name.startswith("tf_efficientnet_lite") and not args.random_weights
            model, source = build(name, pretrained)
            for size in (int(s) for s in args.sizes.split(",")):
                folder = Path(tmp) / f"{name}-{size}"
                folder.mkdir()
                runners, notes = variants(model, size, args.device, folder)
                probe = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
                reference = runners["eager"](probe).astype(np.float64)
                scale = f"eager logits up to |{np.abs(reference).max():.2g}|"
                notes_lines.append(f"- {name} ({source}) at {size} px, {scale}: "
                                   + "; ".join(f"{k}: {v}" for k, v in notes.items()))
                diffs = {k: float(np.abs(run(probe).astype(np.float64) - reference).max())
                         for k, run in runners.items()}
                for batch_size in (int(b) for b in args.batches.split(",")):
                    batch = torch.randn(batch_size, 3, size, size)
                    results = measure(runners, batch, args.rounds, args.seconds)
                    load = load_average()
                    base = statistics.median(results["eager"])
                    for variant, rates in results.items():
                        median = statistics.median(rates)
                        rows.append(f"| {name} | {size} | {batch_size} | {variant} | {median:.1f} | "
                                    f"{median / base:.2f}x | {min(rates):.1f}-{max(rates):.1f} | "
                                    f"{diffs[variant]:.1e} | {load} |")
                    print("\n".join(rows[-len(results):]), flush=True)
    wall = time.perf_counter() - started
    command = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Inference throughput: eager vs BN-fused vs TorchScript vs ONNX Runtime", "",
        f"`nice {command.strip()}` on {device_name} ({args.device}), {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; {args.rounds} "
        f"interleaved rounds of at least {args.seconds:g} s (and one call) per variant after {WARMUP_CALLS} warm-up "
        "calls, median shown. "
        f"Inputs are random tensors already at the model's size (no decoding or resizing: the network alone). "
        f"Load average (1 min) {load_start} at the start; the column gives it after each batch size's rounds. "
        f"Whole run: {wall / 60:.1f} min.", "",
        *rows, "",
        "Variants:", "", *notes_lines, "",
        "'max abs diff vs eager': the largest |logit difference| from the eager fp32 model on one batch of 8 "
        "random inputs (the logits' scale is given per model above).", "",
    ])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
