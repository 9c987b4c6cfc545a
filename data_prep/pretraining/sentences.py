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
"""
from __future__ import annotations

import re
from typing import Iterator

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
