"""Input files cut into byte ranges at document boundaries, so that no shard outgrows memory.

A shard holds its input's token ids and instance table (~4.2 bytes per input byte; see
data_prep/pretraining/shards.py, Memory), so its input must be bounded for its worker's peak
memory to be. A file larger than the limit is read as several spans, each starting right after
a blank line (the input format's document break), so every span holds whole documents and the
spans of a file read in order are the file's documents exactly. The original's own advice for
large corpora is the same: split the input into files and run them separately.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

_SCAN_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class InputSpan:
    """Bytes [start, end) of a text file; end None: to the end of the file (a whole file)."""

    path: str
    start: int = 0
    end: int | None = None

    @property
    def whole_file(self) -> bool:
        return self.start == 0 and self.end is None

    def size(self) -> int:
        """Bytes in the span (int)."""
        end = os.path.getsize(self.path) if self.end is None else self.end
        return end - self.start

    def describe(self) -> str:
        """The path, or the path and its byte range: for logs and manifests."""
        if self.whole_file:
            return self.path
        return f"{self.path} (bytes {self.start}-{self.start + self.size()})"


def as_span(item: str | InputSpan) -> InputSpan:
    return item if isinstance(item, InputSpan) else InputSpan(item)


def _is_blank(line: bytes) -> bool:
    # The reader's rule (shards.read_corpus): a line whose str.strip() is empty.
    return not line.decode("utf-8", errors="replace").strip()


def next_document_start(f, offset: int, end: int) -> int | None:
    """The first offset >= `offset` (and < end) that starts a line right after a blank line,
    or None. f: the file opened "rb". Lines end with b"\\n", as the reader splits them."""
    if offset <= 0:
        return 0
    # Back up one byte so that a line starting exactly at `offset` is seen whole.
    f.seek(offset - 1)
    position = offset - 1
    carry = b""
    skipped_partial = False
    while position < end:
        block = f.read(min(_SCAN_BYTES, end - position))
        if not block:
            return None
        data = carry + block
        line_start = 0
        if not skipped_partial:  # the line that `offset - 1` is in: not known to start there
            cut = data.find(b"\n")
            if cut < 0:
                carry, position = b"", position + len(block)
                continue
            line_start, skipped_partial = cut + 1, True
        base = position - len(carry)
        while True:
            cut = data.find(b"\n", line_start)
            if cut < 0:
                break
            if _is_blank(data[line_start:cut]) and base + cut + 1 < end:
                return base + cut + 1
            line_start = cut + 1
        carry, position = data[line_start:], position + len(block)
    return None


def split_file(path: str, pieces: int) -> list[InputSpan]:
    """`path` as up to `pieces` spans of near-equal size, each cut right after a blank line
    (fewer where the file has fewer document breaks); [InputSpan(path)] for pieces <= 1."""
    size = os.path.getsize(path)
    if pieces <= 1 or size == 0:
        return [InputSpan(path)]
    starts = [0]
    with open(path, "rb") as f:
        for k in range(1, pieces):
            target = max(size * k // pieces, starts[-1] + 1)
            start = next_document_start(f, target, size)
            if start is None:
                break
            if start > starts[-1]:
                starts.append(start)
    if len(starts) == 1:
        return [InputSpan(path)]
    ends = starts[1:] + [size]
    return [InputSpan(path, a, b) for a, b in zip(starts, ends)]


def plan_spans(input_files: Sequence[str], max_shard_bytes: int,
               num_shards: int = 0) -> list[InputSpan]:
    """The input files as spans of at most ~max_shard_bytes (0: no limit, whole files).

    Where that makes fewer than num_shards spans, the files are cut into at least that many
    in all (in proportion to their sizes, where the documents allow), so that one large file
    can feed several shards and workers. A span exceeds the limit only by less than one
    document.
    """
    sizes = [os.path.getsize(p) for p in input_files]
    # Pieces per file, in integers (so that planning again with the shard count this gives
    # makes the same spans): under the limit first, then in proportion to the files' sizes
    # where that is fewer than num_shards.
    counts = [-(-size // max_shard_bytes) if max_shard_bytes > 0 and size else 1
              for size in sizes]
    total = sum(sizes)
    if sum(counts) < num_shards and total:
        counts = [max(count, -(-size * num_shards // total))
                  for count, size in zip(counts, sizes)]
    spans: list[InputSpan] = []
    for path, count in zip(input_files, counts):
        spans.extend(split_file(path, count))
    return spans
