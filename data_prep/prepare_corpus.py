"""Raw text files -> the pretraining input format (one sentence per line, blank line between
documents), one output file per input file, written atomically.

  python -m data_prep.prepare_corpus --input_file='data/corpus/*.txt' \
      --output_dir=data/corpus_sentences

See data_prep/pretraining/sentences.py for the document and sentence rules.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from data_prep import command
from data_prep.pretraining import sentences
from data_prep.files import text_files
from data_prep.files.atomic_io import write_text

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined only when run as a script, so that importing this module registers nothing."""
    flags.DEFINE_string("input_file", None, "Raw text files: comma-separated globs.")
    flags.DEFINE_string("output_dir", None, "Where <input basename> files in the pretraining "
                        "input format are written.")
    flags.DEFINE_integer("max_document_sentences", 200, "Start a new document at the first "
                         "paragraph break after this many sentences (0 = only at headings).")
    flags.DEFINE_enum("invalid_utf8", "error", ["error", "replace"], "Input that is not UTF-8: "
                      "stop, naming the file and line, or replace the bytes by U+FFFD with a "
                      "warning.")


def prepare_file(input_path: str, output_path: str, max_document_sentences: int = 200,
                 invalid_utf8: str = "error") -> dict:
    """Converts one file; returns {'documents', 'sentences'} counts.

    The output appears only complete (written to a unique `<output>.tmp-*` file, then renamed).
    """
    with open(input_path, "rb") as f:
        text = text_files.decode_text(f.read(), input_path, invalid_utf8)
    documents = sentences.text_to_documents(text, max_document_sentences)
    if not documents:
        logging.warning("%s: no text found", input_path)
    write_text(output_path, sentences.format_documents(documents))
    return {"documents": len(documents), "sentences": sum(len(d) for d in documents)}


def prepare_corpus(input_spec: str, output_dir: str, max_document_sentences: int = 200,
                   invalid_utf8: str = "error") -> dict:
    """All files of `input_spec` (comma-separated globs) into `output_dir`; returns counts."""
    if max_document_sentences < 0:
        raise ValueError(f"--max_document_sentences must be >= 0, got {max_document_sentences}")
    inputs = text_files.expand_input_patterns(input_spec, "input_file")
    os.makedirs(output_dir, exist_ok=True)
    totals = {"files": 0, "documents": 0, "sentences": 0}
    for path in inputs:
        out = os.path.join(output_dir, os.path.basename(path))
        if os.path.abspath(out) == os.path.abspath(path):
            raise ValueError(f"--output_dir would overwrite the input {path}")
        counts = prepare_file(path, out, max_document_sentences, invalid_utf8)
        logging.info("%s -> %s: %d documents, %d sentences", path, out,
                     counts["documents"], counts["sentences"])
        totals["files"] += 1
        totals["documents"] += counts["documents"]
        totals["sentences"] += counts["sentences"]
    return totals


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("input_file", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    # A ValueError (a bad input) is reported as one line by data_prep.command.
    totals = prepare_corpus(FLAGS.input_file, FLAGS.output_dir, FLAGS.max_document_sentences,
                            FLAGS.invalid_utf8)
    logging.info("wrote %d files: %d documents, %d sentences", totals["files"],
                 totals["documents"], totals["sentences"])


if __name__ == "__main__":
    define_flags()
    command.run(main, "prepare_corpus")
