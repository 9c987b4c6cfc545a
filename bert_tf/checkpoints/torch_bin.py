"""Reads a PyTorch `pytorch_model.bin` state dict into numpy arrays, without torch.

Since torch 1.6 `torch.save` writes a zip: `<archive>/data.pkl` (a pickle of the state dict
whose tensors refer to storages by key) and `<archive>/data/<key>` (each storage's raw
little-endian bytes). Unpickling an arbitrary pickle runs arbitrary code, so `_Unpickler`
resolves only the handful of globals a state dict needs and rebuilds each tensor as a numpy
view of its storage, bounds-checked. The older tar-based format is left to torch itself
(`torch.load(weights_only=True)`) when it is installed.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

# Storage class name -> numpy dtype. BFloat16 has no numpy dtype: its 16 bits are widened.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"), "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


# The most that a state dict's tensors may add up to, as a multiple of the file's size.
_MAX_EXPANSION = 4


class _StorageType:
    """Stand-in for `torch.FloatStorage` & co.: only its name is needed."""

    def __init__(self, name: str):
        self.name = name


class _BFloat16(np.ndarray):
    """Marks uint16 arrays that hold bfloat16 bits until they are widened to float32."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *unused) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`: a strided view of `storage`, copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise pickle.UnpicklingError(f"bad tensor geometry: size={size} stride={stride}")
    # A checkpoint tensor is a view of part of its storage. More elements than the storage
    # holds means overlapping or broadcast strides (stride 0): nothing a state dict needs, and
    # a way for a tiny file to ask for any amount of memory.
    numel = int(np.prod(size, dtype=object))
    if numel > storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size} stride {stride} has {numel} elements, more than its "
            f"storage of {storage.size}: not a plain checkpoint tensor")
    # Never read past the storage: a corrupt or hostile file must not reach other memory.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size} stride {stride} offset {offset} exceeds its storage "
            f"of {storage.size} elements")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:] if all(size) else storage[:0],
                                           shape=size, strides=[s * item for s in stride])
    array = np.array(view)  # copy: detaches from the zip buffer and makes it contiguous
    if isinstance(storage, _BFloat16):
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data: np.ndarray, requires_grad=None, backward_hooks=None, *unused):
    """`torch._utils._rebuild_parameter`: an `nn.Parameter` is just its data here."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    """Unpickles a state dict, resolving only `_ALLOWED_GLOBALS`; storages come from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, source: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._source = archive, root, source
        self._storages: dict[str, np.ndarray] = {}
        self._budget = _MAX_EXPANSION * os.path.getsize(source) + (1 << 20)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self._source}: refusing to load global {module}.{name}; only plain tensor "
                "state dicts are read without torch.")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        return _ALLOWED_GLOBALS[(module, name)]

    def _rebuild_tensor(self, storage: np.ndarray, offset: int, size, stride, *rest):
        # Tensors may share a storage (tied weights), so the copies can exceed the file, but
        # not by much: cap what one file may make us allocate.
        array = _rebuild_tensor(storage, offset, size, stride, *rest)
        self._budget -= array.nbytes
        if self._budget < 0:
            raise pickle.UnpicklingError(
                f"{self._source}: its tensors add up to more than {_MAX_EXPANSION}x the "
                "file's size; refusing to allocate that much")
        return array

    def persistent_load(self, pid: Any) -> np.ndarray:
        # ('storage', storage_type, key, location, numel): location is ignored (always CPU).
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = _read_entry(self._archive, f"{self._root}/data/{key}", self._source,
                              self._budget)
            dtype = _STORAGE_DTYPES[storage_type.name]
            if len(raw) % dtype.itemsize:
                raise pickle.UnpicklingError(f"{self._source}: storage {key} has a partial element")
            array = np.frombuffer(raw, dtype=dtype)
            if storage_type.name == "BFloat16Storage":
                array = array.view(_BFloat16)
            self._storages[key] = array
        return self._storages[key]


def read_torch_bin(path: str) -> dict[str, np.ndarray]:
    """{name: array} of a `pytorch_model.bin` state dict (native dtypes; bfloat16 -> float32).

    Reads the zip format without torch. For the legacy (pre-1.6) format, or anything beyond a
    plain tensor dict, falls back to `torch.load(..., weights_only=True)` when torch is
    installed. Raises ValueError naming `path` otherwise.
    """
    path = os.fspath(path)
    try:
        return _read_zip(path)
    except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as e:
        reason = e
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ValueError(f"{path}: cannot read this PyTorch file without torch ({reason}); "
                         "install torch or convert it to safetensors.") from reason
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
            for k, v in state.items()}


def _read_entry(archive: zipfile.ZipFile, name: str, source: str, budget: int) -> bytes:
    """One entry's bytes, refused before decompression when it would unpack to more than
    `budget` bytes (a compressed entry of zeros can claim gigabytes in a small file; zipfile
    never inflates past the size the entry declares)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise pickle.UnpicklingError(f"{source}: {name} is missing") from None
    if info.file_size > budget:
        raise pickle.UnpicklingError(
            f"{source}: zip entry {name} unpacks to {info.file_size} bytes, more than "
            f"{_MAX_EXPANSION}x the file's size; refusing to read it")
    return archive.read(info)


def _read_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <archive>/data.pkl, found {pickles}")
        root = pickles[0].split("/")[0]
        if f"{root}/byteorder" in archive.namelist() and \
                archive.read(f"{root}/byteorder").strip() != b"little":
            raise ValueError(f"{path}: big-endian PyTorch files are not supported")
        data = _read_entry(archive, pickles[0], path, _MAX_EXPANSION * os.path.getsize(path))
        state = _Unpickler(data, archive, root, path).load()
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path}: not a flat {{name: tensor}} state dict")
    return {str(k): np.asarray(v) for k, v in state.items()}
