#!/usr/bin/env bash
# One GPU check, under 8 minutes on one H100: what TensorFlow loaded, the GEMM ceiling
# (bfloat16 and TF32) and BERT-base pretraining against keras-hub with MFU.
#
#   pip install -e ".[gpu,bench]" && bash benchmarks/gpu_check.sh
#
# Without a GPU it prints TensorFlow's build facts, says that it skips the GPU parts, and
# exits 0. PYTHON picks the interpreter (default: python); PEAK_TFLOPS overrides the card's
# datasheet peak (benchmarks/gpu_info.py knows H100, H200 and A100). Each part has its own
# time limit, so that one slow part cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

echo "== gpu_check: versions and libraries ($(date -u +%Y-%m-%dT%H:%MZ))"
timeout 120 "$PYTHON" -m benchmarks.gpu_info
status=$?
if [ "$status" -eq 10 ]; then
    echo "gpu_check: no GPU visible to TensorFlow: skipping the GEMM and pretraining tables" \
         "(on an NVIDIA machine: pip install -e \".[gpu,bench]\", and check nvidia-smi)"
    exit 0
elif [ "$status" -ne 0 ]; then
    echo "gpu_check: benchmarks.gpu_info failed (exit $status)" >&2
    exit "$status"
fi

# XLA compiles kernels with ptxas and libdevice: the CUDA 12 nvcc wheel has them, but XLA
# looks for them under /usr/local/cuda unless told where.
if [ -z "${XLA_FLAGS:-}" ]; then
    data_dir=$("$PYTHON" -m benchmarks.gpu_info --xla_cuda_data_dir)
    if [ -n "$data_dir" ]; then
        export XLA_FLAGS="--xla_gpu_cuda_data_dir=$data_dir"
        echo "gpu_check: XLA_FLAGS=$XLA_FLAGS"
    fi
fi

failed=0
run_part() {  # run_part <seconds> <title> <command...>
    local limit=$1 title=$2
    shift 2
    echo
    echo "== gpu_check: $title"
    timeout "$limit" "$@"
    local code=$?
    if [ "$code" -ne 0 ]; then
        echo "gpu_check: '$title' failed (exit $code$([ "$code" -eq 124 ] && echo ", over ${limit}s"))" >&2
        failed=1
    fi
}

GEMMS=1024x768x3072,4096x4096x4096,8192x8192x8192
run_part 90 "GEMM bfloat16" "$PYTHON" -m benchmarks.bench_gemm --dtype=bfloat16 \
    --shapes=$GEMMS --repetitions=10
run_part 90 "GEMM float32 (TF32)" "$PYTHON" -m benchmarks.bench_gemm --dtype=float32 \
    --shapes=$GEMMS --repetitions=10 --no-numpy

peak=$("$PYTHON" -m benchmarks.gpu_info --peak=bfloat16)
peak_flag=()
if [ -n "$peak" ]; then peak_flag=(--peak_tflops="$peak"); fi
# Both sides XLA-compile BERT-base (about 100 s each on an H100), then 3 timed repetitions
# of 10 steps each.
run_part 330 "pretraining BERT-base seq 128 batch 256 bf16 + XLA vs keras-hub" \
    "$PYTHON" -m benchmarks.bench_pretraining --configs=base --seq=128 --batch=256 \
    --dtype=mixed_bfloat16 --xla=on --steps_per_loop=10 --repetitions=3 "${peak_flag[@]}"
exit $failed
