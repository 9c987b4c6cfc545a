"""The build_vocab command: learns a BERT WordPiece vocab from raw text files.

  python -m data_prep.build_vocab --input_file='data/corpus/*.txt' \
      --output_file=vocab.txt --vocab_size=8000 --do_lower_case=true

Also the console script `bert-vocab`. The library and its rules:
data_prep/tokenizer/vocab_builder.py.
"""
from __future__ import annotations

from data_prep.tokenizer.vocab_builder import (RESERVED_TOKENS, build_vocab, expand_patterns,
                                               write_vocab)


def _define_flags() -> None:
    # Defined only when run as a script, so importing this module never
    # clashes with other modules' flags of the same names.
    from absl import flags
    flags.DEFINE_list("input_file", None,
                      "Comma-separated globs of UTF-8 text files.")
    flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
    flags.DEFINE_integer("vocab_size", 30522, "Target vocab size.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents.")
    flags.DEFINE_integer("max_unique_chars", 1000,
                         "Alphabet size kept by the learner.")
    flags.DEFINE_integer("lower_thresh", 10,
                         "Minimum piece count; lower it for small corpora.")
    flags.DEFINE_integer("max_lines", None, "Lines read per file (all).")
    flags.DEFINE_enum("invalid_utf8", "error", ["error", "replace"], "Input that is not UTF-8: "
                      "stop, naming the file and line, or replace the bytes by U+FFFD with a "
                      "warning.")
    flags.mark_flags_as_required(["input_file", "output_file"])


def main(argv: list[str]) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS  # noqa: N806 - absl convention.
    files = expand_patterns(FLAGS.input_file)
    if not files:
        raise app.UsageError(
            f"--input_file={','.join(FLAGS.input_file)} matches no file")
    if FLAGS.vocab_size <= len(RESERVED_TOKENS):
        raise app.UsageError(f"--vocab_size={FLAGS.vocab_size} is too small")
    try:
        tokens = build_vocab(files, FLAGS.vocab_size, FLAGS.do_lower_case,
                             max_unique_chars=FLAGS.max_unique_chars,
                             lower_thresh=FLAGS.lower_thresh,
                             max_lines=FLAGS.max_lines, invalid_utf8=FLAGS.invalid_utf8)
    except ValueError as e:
        raise app.UsageError(f"--input_file: {e}") from e
    write_vocab(tokens, FLAGS.output_file)
    logging.info("Wrote %d tokens from %d file(s) to %s", len(tokens),
                 len(files), FLAGS.output_file)


def run() -> None:
    """Console entry point `bert-vocab` (and `python -m data_prep.build_vocab`)."""
    from data_prep import command
    _define_flags()
    command.run(main, "bert-vocab")


if __name__ == "__main__":
    run()
