"""benchmarks/gpu_check.sh and gpu_info.py: the report's parts, and a clean skip without a GPU.

On a machine with a GPU the full check is a benchmark (minutes), run by hand, not by tests.
"""
import ast
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from benchmarks import bench_gemm, gpu_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                    reason="with a GPU the script runs the whole benchmark")
def test_gpu_check_without_a_gpu_skips_with_a_clear_message():
    done = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh")],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert f"tensorflow {tf.__version__}, built for CUDA" in done.stdout
    assert done.stdout.rstrip().endswith(
        "skipping the GEMM and pretraining tables (on an NVIDIA machine: pip install -e "
        "\".[gpu,bench]\", and check nvidia-smi)")
    assert "== gpu_check: GEMM" not in done.stdout


def test_loaded_libraries_reads_the_memory_map(tmp_path):
    real = tmp_path / "nvidia" / "cublas" / "lib" / "libcublas.so.12.9.1.4"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"")
    link = tmp_path / "libcublas.so.12"
    link.symlink_to(real)
    maps = "\n".join([
        f"7f00-7f10 r-xp 00000000 08:01 123   {link}",
        f"7f10-7f20 r--p 00010000 08:01 123   {link}",
        "7f20-7f30 r-xp 00000000 08:01 124   /usr/lib/libcudnn_ops.so.9.19.0",
        "7f30-7f40 r-xp 00000000 08:01 125   /usr/lib/libm.so.6",
        "7f40-7f50 rw-p 00000000 00:00 0     [heap]",
        "7f50-7f60 r-xp 00000000 08:01 126   /usr/lib/libcuda.so.580.159.04",
        "7f60-7f70 r-xp 00000000 08:01 127   /usr/lib/libcudart_stub.so"])
    assert gpu_info.loaded_libraries(maps) == {
        "libcublas.so.12": str(real),
        "libcudnn_ops.so.9.19.0": "/usr/lib/libcudnn_ops.so.9.19.0",
        "libcuda.so.580.159.04": "/usr/lib/libcuda.so.580.159.04"}


def test_peak_tflops_by_device_name(monkeypatch):
    monkeypatch.delenv("PEAK_TFLOPS", raising=False)
    assert gpu_info.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4
    assert gpu_info.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 494.7
    assert gpu_info.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.5
    assert gpu_info.peak_tflops("NVIDIA A100-SXM4-80GB", "float32") == 156.0
    assert gpu_info.peak_tflops("Tesla T4", "bfloat16") is None
    monkeypatch.setenv("PEAK_TFLOPS", "65")
    assert gpu_info.peak_tflops("Tesla T4", "bfloat16") == 65.0


def test_gemm_shapes_flag_and_no_numpy(capsys):
    assert bench_gemm.main(["--repetitions=1", "--shapes=64x32x16,8x8x8", "--no-numpy"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [r[0] for r in rows] == ["64x32x16", "8x8x8"] and all(len(r) == 3 for r in rows)
    with pytest.raises(SystemExit):
        bench_gemm.main(["--shapes=64x32"])


def test_the_gpu_extra_pins_tensorflow_as_the_package_does():
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
              if k.arg in ("install_requires", "extras_require")}
    pin = next(r for r in kwargs["install_requires"] if r.startswith("tensorflow=="))
    assert kwargs["extras_require"]["gpu"] == [pin.replace("tensorflow", "tensorflow[and-cuda]")]


def test_xla_cuda_data_dir_is_the_nvcc_wheels_folder(tmp_path, monkeypatch):
    class Wheel:
        def locate_file(self, relative):
            return tmp_path / relative

    monkeypatch.setattr(gpu_info.metadata, "distribution", lambda name: Wheel())
    assert gpu_info.xla_cuda_data_dir() is None  # no nvvm/ (libdevice) there: not usable
    (tmp_path / "nvidia" / "cuda_nvcc" / "nvvm").mkdir(parents=True)
    assert gpu_info.xla_cuda_data_dir() == str(tmp_path / "nvidia" / "cuda_nvcc")
