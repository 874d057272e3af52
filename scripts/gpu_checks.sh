#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the CUDA tests, then the memory and speed benchmarks
# on the GPU. Usage: bash scripts/gpu_checks.sh [OUTPUT_DIR]   (default outputs/gpu_checks)
# Each step has its own time limit, so one that hangs does not take the others' time.
set -u
out=${1:-${OUT:-outputs/gpu_checks}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"
start=$SECONDS
timeout 240 python3 -m pytest -q -m "" -rfEs --durations=8 tests/test_cuda.py "tests/test_operators.py" -k cuda 2>&1 | tee "$out/tests.log"
echo "tests: $((SECONDS - start)) s"; start=$SECONDS
timeout 90 python3 benchmarks/memory.py --device cuda --output "$out/memory_cuda.md" 2>&1 | tail -20
echo "memory: $((SECONDS - start)) s"; start=$SECONDS
# iteration counts x 0.2: the full DMPlug preset alone takes ~6 min with the 32 x 32 prior on an H100
timeout 300 python3 benchmarks/speed.py --device cuda --presets inpainting_dmilo inpainting_dmplug --scale 0.2 \
    --output "$out/speed_cuda.md" 2>&1 | grep -v "it/s\]" | tail -30
echo "speed: $((SECONDS - start)) s"
