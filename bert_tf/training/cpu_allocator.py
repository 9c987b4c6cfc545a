"""TensorFlow's BFC allocator for host (CPU) memory, which the bert_tf scripts turn on.

By default TensorFlow allocates CPU tensors with malloc. glibc serves large blocks (tens of MB
and more: a BERT step's activations, gradients and XLA's temporaries) with fresh `mmap`s and
unmaps them when freed, so every step touches new pages and the kernel faults in and zeroes
each 4 KiB page again. TensorFlow's best-fit-with-coalescing (BFC) allocator keeps the memory
it has taken and reuses it. On the project's 2-core VM that made a whole BERT pretraining step
1.2x (base) to 2x (tiny) faster, for every model, keras-hub's included (docs/design.md,
"Training step"). The cost: memory that TensorFlow once used stays with the process until it exits,
up to `TF_CPU_BFC_MEM_LIMIT_IN_MB` (TensorFlow's default: 64 GiB); peak memory of a BERT-base
training process was 14% higher.

With oneDNN on some CPUs (seen on an AVX-512 VM) TensorFlow's default CPU allocator is already
oneDNN's `mklcpu`, itself a BFC allocator; there the switch changes nothing and
`bfc_cpu_allocator_active` is true either way.

TensorFlow reads `TF_CPU_ALLOCATOR_USE_BFC` once, when it creates its CPU allocator, i.e. when
the process allocates its first tensor, not at import. So this must run before any tensor
exists; a script calls it first thing in `main`.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

ENV_VAR = "TF_CPU_ALLOCATOR_USE_BFC"
_LOG = logging.getLogger(__name__)


def bfc_cpu_allocator_active() -> bool:
    """True if TensorFlow's CPU allocator is the BFC allocator (only it keeps statistics).

    Creates TensorFlow's CPU allocator if it does not exist yet, so call it after
    `use_bfc_cpu_allocator`, not before."""
    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:  # "Allocator stats not available": the default allocator
        return False
    return True


def use_bfc_cpu_allocator(enable: bool = True) -> bool:
    """Asks TensorFlow for its BFC allocator on CPU; returns whether it is in use.

    An explicit `TF_CPU_ALLOCATOR_USE_BFC` in the environment wins over `enable`. If the
    allocator was already created (a tensor exists) with another setting, it stays as it is
    and a warning says how to set it before the process starts.
    """
    if enable:
        os.environ.setdefault(ENV_VAR, "true")
    active = bfc_cpu_allocator_active()
    wanted = os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true")
    if wanted and not active:
        _LOG.warning("TensorFlow's CPU allocator already existed when %s was set, so it stays "
                     "malloc-based (slower on CPU). Set %s=true in the environment before "
                     "the process starts.", ENV_VAR, ENV_VAR)
    return active
