"""Learns a BERT WordPiece vocab from raw text files: `build_vocab(...) -> list[str]` and
`write_vocab(tokens, path)` (the command: data_prep/build_vocab.py, `bert-vocab`).

Words are counted with the same BasicTokenizer rules that tokenization uses
(so learned pieces match what the tokenizer will look up), then
tensorflow-text's WordPiece learner picks the pieces. The vocab starts with
the reserved tokens, [PAD] first (id 0).
"""

from __future__ import annotations

import collections
import glob
import os
from typing import Iterable, Sequence

from tensorflow_text.tools.wordpiece_vocab import (
    wordpiece_tokenizer_learner_lib as learner)

from data_prep.files import text_files
from data_prep.tokenizer import tokenization
from data_prep.files.atomic_io import write_text

RESERVED_TOKENS = tokenization.RESERVED_TOKENS


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Globs -> sorted, de-duplicated list of existing files."""
    files = set()
    for pattern in patterns:
        files.update(p for p in glob.glob(pattern) if os.path.isfile(p))
    return sorted(files)


def count_words(files: Sequence[str], do_lower_case: bool,
                max_lines: int | None = None, invalid_utf8: str = "error") -> collections.Counter:
    """Word -> count over `files` (UTF-8, one text per line) with BERT rules.

    `max_lines` caps the lines read per file (None: all). invalid_utf8: the policy of
    data_prep.files.text_files (error: ValueError naming file and line; replace: U+FFFD + warning).
    """
    basic = tokenization.BasicTokenizer(do_lower_case)
    counts: collections.Counter = collections.Counter()
    for path in files:
        for line in text_files.read_lines(path, invalid_utf8, max_lines):
            counts.update(basic.tokenize(line))
    return counts


def _alphabet(counts: collections.Counter, max_unique_chars: int) -> list[str]:
    """The `max_unique_chars` most frequent characters (ties: by char)."""
    chars: collections.Counter = collections.Counter()
    for word, n in counts.items():
        for ch in word:
            chars[ch] += n
    ranked = sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))
    return [ch for ch, _ in ranked[:max_unique_chars]]


def build_vocab(input_files: Sequence[str], vocab_size: int,
                do_lower_case: bool,
                reserved_tokens: Sequence[str] = RESERVED_TOKENS,
                max_unique_chars: int = 1000, max_token_length: int = 50,
                num_iterations: int = 4, lower_thresh: int = 10,
                max_lines: int | None = None, invalid_utf8: str = "error") -> list[str]:
    """Learns a WordPiece vocab (list of tokens; index = id).

    Args:
      input_files: paths or glob patterns of UTF-8 text files.
      vocab_size: target size; the learner lands within 5% below it. Every
        one of the `max_unique_chars` most frequent characters and its "##"
        form is then guaranteed present (appended if the learner dropped
        it), which can add a few entries above `vocab_size`.
      do_lower_case: BERT's flag; must match the tokenizer's.
      reserved_tokens: first entries of the vocab; must start with [PAD] and
        contain [UNK] [CLS] [SEP] [MASK].
      max_unique_chars, max_token_length, num_iterations: passed to the
        tensorflow-text learner.
      lower_thresh: the learner's minimum piece count; lower it (e.g. 2) for
        small corpora that cannot otherwise fill `vocab_size`.
      max_lines: read only the first `max_lines` lines of each file.
      invalid_utf8: "error" (ValueError naming the file and line) or "replace" (U+FFFD and
        a warning), as data_prep.files.text_files.

    Raises:
      ValueError: no file matches, the files hold no words, or bad
        reserved tokens.
    """
    reserved = list(reserved_tokens)
    tokenization.validate_vocab({t: i for i, t in enumerate(reserved)},
                                "reserved_tokens")
    files = expand_patterns(input_files)
    if not files:
        raise ValueError(f"build_vocab: no file matches {list(input_files)}")
    counts = count_words(files, do_lower_case, max_lines, invalid_utf8)
    if not counts:
        raise ValueError(f"build_vocab: no words in {files}")
    tokens = learner.learn(
        counts, vocab_size, reserved, max_unique_chars=max_unique_chars,
        max_token_length=max_token_length, num_iterations=num_iterations,
        lower_thresh=lower_thresh)
    present = set(tokens)
    for ch in _alphabet(counts, max_unique_chars):
        for token in (ch, tokenization.SUFFIX + ch):
            if token not in present:
                tokens.append(token)
                present.add(token)
    return tokens


def write_vocab(tokens: Sequence[str], path: str) -> None:
    """Writes one token per line, atomically (temp file + os.replace).

    Creates the parent directory if needed.
    """
    write_text(path, "".join(t + "\n" for t in tokens))
