"""Raw book-like text -> documents of sentences (the pretraining input format's content).

Rules (rule based, no NLTK):
  * Paragraphs are blocks of non-blank lines; wrapped lines are joined with one space.
  * A paragraph of one or two short lines that looks like a heading starts a new document
    and is dropped: a bracketed title line; "Chapter 3", "CHAPTER XII", "Actus Primus",
    "Scena Secunda", "Book", "Part", "Appendix" ...; a roman numeral ("II." or "IV. The Head
    of Caesar"); or a short mostly-capitals line without end punctuation ("THE SICK ROSE").
    So chapters, scenes and poems become documents; --max_document_sentences (prepare_corpus)
    also cuts very long ones at a paragraph break (Hamlet's later acts carry no headings).
  * Sentences end at . ? ! (runs too, "?!", "...") followed by optional closing quotes or
    brackets, whitespace, then an optional opening quote/bracket and a capital letter or digit.
    Not after an abbreviation (Mr. Mrs. Dr. St. ...) or a single capital initial ("G. K.").
    '"Oh!" said he' stays one sentence (lower-case next word).
  * A one-word piece ending in "." (speaker labels such as "Ham." in plays) joins the next
    sentence of its paragraph.

Input text policy (shared by build_vocab, prepare_corpus and create_pretraining_data, flag
`--invalid_utf8`): files are UTF-8. `error` (the default, as the original, which stops with a
decode error) fails with the file, the first bad line and the byte in it; `replace` replaces
invalid bytes by U+FFFD and warns once per file with the first bad line and how many lines
were affected (a few stray bytes in a crawl need not stop a long job, but must be visible).
"""
from __future__ import annotations

import glob
import os
import re
from typing import Iterator

from absl import logging

ABBREVIATIONS = frozenset(
    "mr mrs ms messrs mme mlle dr st jr sr prof rev hon col gen capt lt sgt esq mt gov "
    "sen rep fr vs viz cf e.g i.e".split())

_HEADING_WORDS = re.compile(
    r"^(chapter|book|part|volume|act|actus|scene|scena|scoena|section|canto|appendix|"
    r"prologue|epilogue|preface|introduction)\b", re.IGNORECASE)
_ROMAN_HEADING = re.compile(r"^[IVXLC]+(\.|$)")
_TITLE_LINE = re.compile(r"^\[.*\]$")
_BOUNDARY = re.compile(r"([.?!]+)([\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]*[A-Z0-9])")


def paragraphs(text: str) -> Iterator[list[str]]:
    """Blocks of non-blank lines, each line stripped."""
    block: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def is_heading(block: list[str]) -> bool:
    """True for a short paragraph that names a chapter, scene, poem or book."""
    line = " ".join(block)
    if len(block) == 1 and _TITLE_LINE.match(line):
        return True
    words = line.split()
    if len(block) > 2 or len(line) > 80 or len(words) > 12:
        return False
    if len(block) == 1 and len(words) <= 8 and (_ROMAN_HEADING.match(line)
                                                or _HEADING_WORDS.match(line)):
        return True
    letters = [c for c in line if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    return bool(letters) and upper >= 0.6 * len(letters) and line[-1] not in ".!?,;:\"'"


def split_sentences(paragraph: str) -> list[str]:
    """One unwrapped paragraph -> its sentences, whitespace normalised."""
    text = " ".join(paragraph.split())
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(2)
        if match.group(1) == "." and not match.group(2) and _is_abbreviation(text, match.start()):
            continue
        pieces.append(text[start:end])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return _merge_labels(pieces)


def _is_abbreviation(text: str, dot: int) -> bool:
    word = text[:dot].rsplit(None, 1)[-1].lstrip("\"'([\u201c\u2018") if text[:dot] else ""
    return (word.lower() in ABBREVIATIONS
            or (len(word) == 1 and word.isupper()))


def _merge_labels(pieces: list[str]) -> list[str]:
    out: list[str] = []
    carry = ""
    for piece in pieces:
        if carry:
            piece = f"{carry} {piece}"
            carry = ""
        if " " not in piece and piece.endswith(".") and piece[:-1].isalpha():
            carry = piece
        else:
            out.append(piece)
    if carry:
        out.append(carry)
    return out


def text_to_documents(text: str, max_document_sentences: int = 0) -> list[list[str]]:
    """Raw text -> documents (lists of sentences); empty documents are dropped.

    max_document_sentences > 0 also starts a new document at the first paragraph break after
    that many sentences (for books without headings).
    """
    documents: list[list[str]] = [[]]
    for block in paragraphs(text):
        if is_heading(block):
            if documents[-1]:
                documents.append([])
            continue
        if 0 < max_document_sentences <= len(documents[-1]):
            documents.append([])
        documents[-1].extend(split_sentences(" ".join(block)))
    return [d for d in documents if d]


def format_documents(documents: list[list[str]]) -> str:
    """The pretraining input format: one sentence per line, a blank line between documents."""
    return "\n\n".join("\n".join(doc) for doc in documents) + ("\n" if documents else "")


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


def _invalid_utf8_error(source: str, line_number: int, line: bytes, count: int) -> ValueError:
    try:
        line.decode("utf-8")
        column = 0
    except UnicodeDecodeError as e:
        column = e.start
    more = f" ({count} such lines in the file)" if count > 1 else ""
    return ValueError(f"{source}:{line_number}: invalid UTF-8 at byte {column} of the line"
                      f"{more}; fix the file, or pass --invalid_utf8=replace to replace invalid "
                      "bytes by U+FFFD")


def decode_text(data: bytes, source: str, invalid_utf8: str = "error") -> str:
    """UTF-8 bytes -> str. Invalid bytes: ValueError naming `source`, the line and the byte
    (`invalid_utf8="error"`), or U+FFFD with one warning (`"replace"`)."""
    _check_policy(invalid_utf8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad_lines = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(number)
    if invalid_utf8 == "error":
        raise _invalid_utf8_error(source, bad_lines[0], lines[bad_lines[0] - 1], len(bad_lines))
    logging.warning("%s: invalid UTF-8 on %d line(s), first at line %d; replaced by U+FFFD",
                    source, len(bad_lines), bad_lines[0] if bad_lines else 0)
    return data.decode("utf-8", errors="replace")


_BLOCK_BYTES = 1 << 22


def read_text_blocks(path: str, invalid_utf8: str = "error",
                     block_bytes: int = _BLOCK_BYTES) -> Iterator[str]:
    """A UTF-8 file as pieces of whole lines of about block_bytes each: joined with "\n"
    they are decode_text of the whole file, with its policy and messages for invalid bytes
    (so a reader holds one block, not the file). An empty file gives one empty piece."""
    _check_policy(invalid_utf8)
    bad, first, line_base = 0, 0, 0  # bad lines, the first of them, lines before the block
    with open(path, "rb") as f:
        carry = b""
        while True:
            more = f.read(block_bytes)
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
                if invalid_utf8 == "error":  # the whole file's message (its count of lines)
                    f.seek(0)
                    decode_text(f.read(), path, invalid_utf8)
                lines = data.split(b"\n")
                numbers = [n for n, line in enumerate(lines, start=1) if not _valid(line)]
                bad, first = bad + len(numbers), first or line_base + numbers[0]
                text = data.decode("utf-8", errors="replace")
            yield text
            if not more:
                break
            line_base += data.count(b"\n") + 1
    if bad:
        logging.warning("%s: invalid UTF-8 on %d line(s), first at line %d; replaced by U+FFFD",
                        path, bad, first)


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
