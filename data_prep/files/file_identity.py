"""How feature caches recognise their inputs: a cheap stat fingerprint and a content hash."""
from __future__ import annotations

import hashlib
import os


def file_fingerprint(path: str) -> dict:
    """Absolute path, size and modification time: changes whenever the file is rewritten."""
    stat = os.stat(path)
    return {"file": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes (for small files such as vocabularies)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
