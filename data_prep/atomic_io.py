"""Atomic file writes: a reader never sees a half-written file (no TensorFlow import here).

Everything bert_tf and data_prep write as a final file goes through `atomic_path`: the data
goes to `<path>.tmp-<host>-<pid>-<random>` and is renamed over `path` only when complete
(unique even when workers on several hosts share a file system, as under Apache Beam). A
killed process leaves at most the `.tmp-*` file; the files get the usual umask permissions.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path to write; renames it to `path` only if the block succeeds.

    The parent directory is created if needed. On an exception the temporary file is removed.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 `text` to `path` atomically (newlines as given)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_json(path: str, value: Any, indent: int = 1, sort_keys: bool = True) -> None:
    """Writes `value` as JSON (plus a final newline) to `path` atomically."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")
