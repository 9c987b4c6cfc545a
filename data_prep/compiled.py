"""numba for data_prep's compiled kernels, imported without numba's probe of scipy.linalg.

The first kernel a process loads from numba's cache makes numba import numba.np.arraymath,
which checks for BLAS (for np.dot and np.linalg) by importing scipy.linalg: ~0.2 s of every
create_pretraining_data start-up (a fifth of it), for functions no kernel here calls. So
arraymath is imported here with scipy.linalg marked absent (`sys.modules[name] = None`
makes an import of it fail), and the mark is removed at once: numba then computes np.dot
kernels of this process without BLAS (the same results, slower), and a later
`import scipy.linalg` anywhere works as usual. Where scipy.linalg or arraymath is already
imported, nothing is changed. Modules with kernels import numba from here:

    from data_prep.compiled import numba
"""
from __future__ import annotations

import sys


def _import_numba_without_scipy_linalg() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401  (its BLAS probe fails quietly)
    finally:
        if sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


_import_numba_without_scipy_linalg()

import numba  # noqa: E402

__all__ = ["numba"]
