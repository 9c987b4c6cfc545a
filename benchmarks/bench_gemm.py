"""Matrix-product ceiling: how many FLOP/s one GEMM of a training step's shapes reaches here.

    python -m benchmarks.bench_gemm                    # float32: TF with/without XLA, NumPy
    python -m benchmarks.bench_gemm --dtype=bfloat16   # TF only (NumPy has no bf16 GEMM)
    python -m benchmarks.bench_gemm --shapes=8192x8192x8192 --no-numpy   # a GPU's ceiling

A pretraining step cannot run faster than its matrix products at this rate, so the model
GFLOP/s of `bench_pretraining.py --peak_tflops=...` over this figure says how much room is
left. Shapes (tokens x in x out): the dense layers of one BERT-base block on a batch of
8 x 128 tokens (QKV, FFN in, FFN out), and a large square product.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from benchmarks import common

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPES = ((1024, 768, 2304), (1024, 768, 3072), (1024, 3072, 768), (4096, 4096, 4096))


def _first_element(out: tf.Tensor | np.ndarray) -> float:
    """Waits for `out` by reading one element: no full copy to the host in the timed region."""
    return float(np.asarray(out[:1, :1])[0, 0])


def _gemm(name: str, product: Callable[[], tf.Tensor | np.ndarray],
          gflop: float) -> common.Contender:
    """A contender whose `rate` is GFLOP/s: `items` counts GFLOP, and each run waits."""
    return common.Contender(name, lambda: _first_element(product()), gflop)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES),
                        help="comma list of MxKxN (default: %(default)s)")
    parser.add_argument("--numpy", action=argparse.BooleanOptionalAction, default=True,
                        help="also time NumPy (float32 only; on a GPU machine it is the host)")
    common.add_allocator_argument(parser)
    args = parser.parse_args(argv)
    allocator_line = common.choose_allocator(args.cpu_allocator)
    print("\n".join(common.environment_lines(["tensorflow", "numpy"])))
    print(allocator_line)
    if args.dtype == "float32" and tf.config.list_physical_devices("GPU"):
        # On Ampere and newer GPUs TensorFlow runs float32 matmuls as TF32 unless told not to.
        print("float32 matmuls as TF32: "
              f"{'on' if tf.config.experimental.tensor_float_32_execution_enabled() else 'off'}")
    rows = []
    rng = np.random.default_rng(0)
    try:
        shapes = [tuple(int(d) for d in shape.split("x")) for shape in
                  common.parse_list(args.shapes)]
        assert shapes and all(len(shape) == 3 and min(shape) > 0 for shape in shapes)
    except (ValueError, AssertionError):
        parser.error(f"--shapes={args.shapes}: want a comma list of MxKxN, e.g. 1024x768x3072")
    with_numpy = args.numpy and args.dtype == "float32"
    for m, k, n in shapes:
        a_np = rng.standard_normal((m, k), np.float32)
        b_np = rng.standard_normal((k, n), np.float32)
        a, b = tf.constant(a_np, args.dtype), tf.constant(b_np, args.dtype)
        gflop = 2e-9 * m * k * n
        contenders = [_gemm("xla", tf.function(lambda: tf.matmul(a, b), jit_compile=True), gflop),
                      _gemm("tf", tf.function(lambda: tf.matmul(a, b)), gflop)]
        if with_numpy:
            contenders.append(_gemm("numpy", lambda: a_np @ b_np, gflop))
        common.interleave(contenders, args.repetitions, log=None)
        rows.append([f"{m}x{k}x{n}"] + [c.error[:40] if c.error else f"{c.rate:.0f}"
                                         for c in contenders])
    header = ["m x k x n", "TF + XLA GFLOP/s", "TF GFLOP/s"]
    if with_numpy:
        header.append("NumPy GFLOP/s")
    common.print_table(f"One {args.dtype} GEMM, median of {args.repetitions}", header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
