"""What TensorFlow runs a GPU with: versions it was built for, libraries it loaded, the card.

    python -m benchmarks.gpu_info                  # the report; exit 10 when no GPU is visible
    python -m benchmarks.gpu_info --peak=bfloat16  # the card's dense peak TFLOP/s, or nothing
    python -m benchmarks.gpu_info --xla_cuda_data_dir   # the CUDA wheel folder XLA needs, or nothing

TensorFlow opens CUDA libraries by their CUDA 12 names (`libcublas.so.12`, `libcudnn.so.9`);
whatever answers to that name is used, so the only way to know which build ran (the
`nvidia-*-cu12` wheels of `pip install -e ".[gpu]"`, or a system CUDA behind a link) is to read
the process's memory map after a matmul has loaded them. benchmarks/gpu_check.sh starts with
this report.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

from benchmarks import common  # noqa: F401  (quiets TensorFlow before it loads)

NO_GPU_EXIT = 10
# Dense (non-sparse) peak TFLOP/s by device name, from NVIDIA's datasheets: (bfloat16, TF32).
# Matched in order against TensorFlow's device name; the first match wins.
PEAK_TFLOPS = (
    ("H100 PCIe", (756.5, 378.0)),
    ("H100", (989.4, 494.7)),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", (989.4, 494.7)),
    ("A100", (312.0, 156.0)),
)
# The CUDA libraries whose loaded file is reported, by file name.
_LIBRARY = re.compile(r"(libcudart|libcublasLt|libcublas|libcudnn\w*|libcufft|libcusolver|"
                      r"libcusparse|libnccl|libnvJitLink|libcuda)\.so")


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The datasheet dense peak for `dtype` (bfloat16, or float32 meaning TF32); None when the
    card is not in PEAK_TFLOPS. The environment's PEAK_TFLOPS overrides it."""
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"])
    for pattern, (bf16, tf32) in PEAK_TFLOPS:
        if pattern in device_name:
            return bf16 if dtype == "bfloat16" else tf32
    return None


def loaded_libraries(maps_text: str) -> dict[str, str]:
    """{library file name: the real file it maps} for the CUDA libraries in a
    /proc/<pid>/maps text."""
    found = {}
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5].strip() if len(fields) == 6 else ""
        if path.startswith("/") and _LIBRARY.match(os.path.basename(path)):
            found.setdefault(os.path.basename(path), os.path.realpath(path))
    return found


def xla_cuda_data_dir() -> str | None:
    """The folder of the `nvidia-cuda-nvcc-cu12` wheel (ptxas, libdevice), for
    XLA_FLAGS=--xla_gpu_cuda_data_dir=...; None when that wheel is not installed."""
    try:  # asked of the distribution, which tensorflow[and-cuda] pulls in
        wheel = metadata.distribution("nvidia-cuda-nvcc-cu12")
    except metadata.PackageNotFoundError:
        return None
    folder = str(wheel.locate_file(os.path.join("nvidia", "cuda_nvcc")))
    return folder if os.path.isdir(os.path.join(folder, "nvvm")) else None


def _nvidia_smi() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return ["nvidia-smi: not found"]
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                           "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
    return [f"nvidia-smi: {line}" for line in done.stdout.splitlines() if line.strip()] or [
        f"nvidia-smi: failed ({done.stderr.strip()[:200]})"]


def report() -> int:
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    print(f"tensorflow {tf.__version__}, built for CUDA {build.get('cuda_version', '-')}, "
          f"cuDNN {build.get('cudnn_version', '-')}, compute capabilities "
          f"{build.get('cuda_compute_capabilities', '-')}")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("no GPU visible to TensorFlow" + ("" if build.get("is_cuda_build") else
                                                " (this TensorFlow is not a CUDA build)"))
        return NO_GPU_EXIT
    for line in common.accelerator_lines() + _nvidia_smi():
        print(line)
    # Load the libraries a training step uses: cuBLAS(Lt) through a matmul, cuDNN through a
    # convolution.
    with tf.device("/GPU:0"):
        x = tf.random.normal((256, 256))
        float(tf.reduce_sum(tf.matmul(x, x)))
        float(tf.reduce_sum(tf.nn.conv2d(tf.reshape(x, (1, 256, 256, 1)),
                                         tf.ones((3, 3, 1, 1)), 1, "SAME")))
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        libraries = loaded_libraries(f.read())
    for name, real in sorted(libraries.items()):
        print(f"loaded {name}: {real}")
    if not libraries:
        print("loaded CUDA libraries: none found in /proc/self/maps")
    print(f"XLA CUDA data dir (nvidia-cuda-nvcc-cu12): {xla_cuda_data_dir() or 'not installed'}"
          f"; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    peaks = [peak_tflops(name, d) for d in ("bfloat16", "float32")]
    print("dense peak TFLOP/s: " + (f"{peaks[0]} bfloat16, {peaks[1]} TF32" if peaks[0] else
                                    f"unknown for {name!r} (set PEAK_TFLOPS for an MFU column)"))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak", choices=("bfloat16", "float32"),
                        help="print only the first GPU's dense peak TFLOP/s for this dtype")
    parser.add_argument("--xla_cuda_data_dir", action="store_true",
                        help="print only the CUDA wheel folder for --xla_gpu_cuda_data_dir")
    args = parser.parse_args(argv)
    if args.xla_cuda_data_dir:
        print(xla_cuda_data_dir() or "")
        return 0
    if args.peak:
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        name = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
                if gpus else "")
        peak = peak_tflops(name, args.peak) if gpus else None
        print("" if peak is None else peak)
        return 0
    return report()


if __name__ == "__main__":
    sys.exit(main())
