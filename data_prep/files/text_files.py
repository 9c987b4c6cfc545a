"""Text input files: comma-separated globs to files, and UTF-8 read in streams.

Policy for invalid bytes (shared by build_vocab, prepare_corpus and create_pretraining_data, flag
`--invalid_utf8`): files are UTF-8. `error` (the default, as the original, which stops with a
decode error) fails with the file, the first bad line and the byte in it; `replace` replaces
invalid bytes by U+FFFD and warns once per file with the first bad line and how many lines
were affected (a few stray bytes in a crawl need not stop a long job, but must be visible).
"""
from __future__ import annotations

import glob
import os
from typing import Iterator

from absl import logging


def expand_input_patterns(spec: str, flag_name: str = "input_file") -> list[str]:
    """Comma-separated globs -> files, in flag order (each glob sorted), duplicates dropped.

    Raises ValueError naming the flag when the spec is empty or matches no file.
    """
    patterns = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"--{flag_name} is empty")
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
        if not matched:
            raise ValueError(f"--{flag_name}: no file matches {pattern!r}")
        files.extend(m for m in matched if m not in files)
    return files


INVALID_UTF8 = ("error", "replace")


def _check_policy(invalid_utf8: str) -> None:
    if invalid_utf8 not in INVALID_UTF8:
        raise ValueError(f"--invalid_utf8 must be one of {INVALID_UTF8}, got {invalid_utf8!r}")


def _invalid_utf8_error(source: str, line_number: int, line: bytes, count: int,
                        where: str = "in the file") -> ValueError:
    try:
        line.decode("utf-8")
        column = 0
    except UnicodeDecodeError as e:
        column = e.start
    more = f" ({count} such lines {where})" if count > 1 else ""
    return ValueError(f"{source}:{line_number}: invalid UTF-8 at byte {column} of the line"
                      f"{more}; fix the file, or pass --invalid_utf8=replace to replace invalid "
                      "bytes by U+FFFD")


def decode_text(data: bytes, source: str, invalid_utf8: str = "error", first_line: int = 1,
                where: str = "in the file") -> str:
    """UTF-8 bytes -> str. Invalid bytes: ValueError naming `source`, the line and the byte
    (`invalid_utf8="error"`), or U+FFFD with one warning (`"replace"`). first_line: the line
    number of data's first line in `source`; where: what the count of bad lines is of."""
    _check_policy(invalid_utf8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad_lines = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=first_line):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(number)
    if invalid_utf8 == "error":
        raise _invalid_utf8_error(source, bad_lines[0], lines[bad_lines[0] - first_line],
                                  len(bad_lines), where)
    logging.warning("%s: invalid UTF-8 on %d line(s), first at line %d; replaced by U+FFFD",
                    source, len(bad_lines), bad_lines[0] if bad_lines else 0)
    return data.decode("utf-8", errors="replace")


_BLOCK_BYTES = 1 << 22


def _lines_before(f, offset: int) -> int:
    """Newlines in the file's first `offset` bytes (f opened "rb"; its position is moved)."""
    f.seek(0)
    count, left = 0, offset
    while left > 0:
        block = f.read(min(_BLOCK_BYTES, left))
        if not block:
            break
        count, left = count + block.count(b"\n"), left - len(block)
    return count


def read_text_blocks(path: str, invalid_utf8: str = "error", block_bytes: int = _BLOCK_BYTES,
                     start: int = 0, end: int | None = None) -> Iterator[str]:
    """A UTF-8 file as pieces of whole lines of about block_bytes each: joined with "\n"
    they are decode_text of the whole file, with its policy and messages for invalid bytes
    (so a reader holds one block, not the file). An empty file gives one empty piece.

    start, end: read only bytes [start, end) of the file (end None: to its end), as
    data_prep/pretraining/input_spans.py cuts them at line starts; messages give the line
    numbers of the whole file.
    """
    _check_policy(invalid_utf8)
    # bad lines, the first of them, lines before the block (from `start`)
    bad, first, line_base = 0, 0, 0
    before_start: list[int] = []  # lines before `start`: counted only for a message

    def lines_before_start() -> int:
        if not before_start:
            position = f.tell()
            before_start.append(_lines_before(f, start) if start else 0)
            f.seek(position)
        return before_start[0]

    with open(path, "rb") as f:
        left = os.path.getsize(path) - start if end is None else end - start
        whole = start == 0 and end is None
        f.seek(start)
        carry = b""
        while True:
            more = f.read(min(block_bytes, left))
            left -= len(more)
            data = carry + more
            if more:
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                data, carry = data[:cut], data[cut + 1:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if invalid_utf8 == "error":  # the message of all bytes read (their count)
                    decode_text(_read_range(f, start, end), path, invalid_utf8,
                                lines_before_start() + 1,
                                "in the file" if whole else "in the bytes read")
                lines = data.split(b"\n")
                numbers = [n for n, line in enumerate(lines, start=1) if not _valid(line)]
                bad = bad + len(numbers)
                first = first or lines_before_start() + line_base + numbers[0]
                text = data.decode("utf-8", errors="replace")
            yield text
            if not more:
                break
            line_base += data.count(b"\n") + 1
    if bad:
        logging.warning("%s: invalid UTF-8 on %d line(s), first at line %d; replaced by U+FFFD",
                        path, bad, first)


def _read_range(f, start: int, end: int | None) -> bytes:
    f.seek(start)
    return f.read() if end is None else f.read(end - start)


def _valid(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_lines(path: str, invalid_utf8: str = "error",
               max_lines: int | None = None) -> Iterator[str]:
    """The lines of a UTF-8 file, streamed (newlines kept), with decode_text's policy for
    invalid bytes; at most `max_lines` lines (None: all)."""
    _check_policy(invalid_utf8)
    bad, first = 0, 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if max_lines is not None and number > max_lines:
                break
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                if invalid_utf8 == "error":
                    raise _invalid_utf8_error(path, number, raw, 1) from None
                bad, first = bad + 1, first or number
                yield raw.decode("utf-8", errors="replace")
    if bad:
        logging.warning("%s: invalid UTF-8 on %d line(s), first at line %d; replaced by U+FFFD",
                        path, bad, first)
