"""Atomic file writes: a reader never sees a half-written file (no TensorFlow import here).

Everything bert_tf and data_prep write as a final file goes through `atomic_path`: the data
goes to `<path>.tmp-<host>-<pid>-<random>` and is renamed over `path` only when complete
(unique even when workers on several hosts share a file system, as under Apache Beam). A
killed process leaves at most the `.tmp-*` file; the files get the usual umask permissions.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import socket
import uuid
from typing import Any, Iterator


_TAG_DIGITS = 8  # random hex digits ending a temporary's name


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path to write; renames it to `path` only if the block succeeds.

    The parent directory is created if needed. On an exception the temporary file is removed.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:_TAG_DIGITS]}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed worker whose parent died too stays a zombie until PID 1 reaps it, which a
    container's init may never do: it answers kill(pid, 0) but writes nothing any more."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # "pid (comm) state ...": comm may hold spaces and parentheses; state follows
            # the last ')'.
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False  # no /proc (not Linux): trust kill(pid, 0)


def remove_stale_temporaries(path: str) -> list[str]:
    """Removes `<path>.tmp-<host>-<pid>-*` files left by dead writers on this host.

    A killed writer leaves its temporary behind; a rerun writes a new one, so the old one is
    only litter. Temporaries of live processes, and of other hosts (whose processes cannot be
    checked from here), are left alone. Returns the removed paths.
    """
    host = socket.gethostname()
    # The name `atomic_path` gives: <path>.tmp-<host>-<pid>-<tag>.
    pattern = re.compile(re.escape(os.path.basename(path))
                         + rf"\.tmp-(.+)-(\d+)-[0-9a-f]{{{_TAG_DIGITS}}}$")
    removed = []
    for candidate in glob.glob(glob.escape(path) + ".tmp-*"):
        match = pattern.match(os.path.basename(candidate))
        if match and match.group(1) == host and not _pid_alive(int(match.group(2))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(candidate)
                removed.append(candidate)
    return removed


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 `text` to `path` atomically (newlines as given)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_json(path: str, value: Any, indent: int = 1, sort_keys: bool = True) -> None:
    """Writes `value` as JSON (plus a final newline) to `path` atomically."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")
