"""The create_pretraining_data command: text files -> sharded pretraining TFRecords.

  python -m data_prep.create_pretraining_data --flagfile=flags/create_pretraining_data_tiny.flags

The original script's flags (names and defaults) plus sharding, workers and modes; the
algorithm, its deliberate deviations, speed and memory are described in
data_prep/pretraining/shards.py.
"""
from __future__ import annotations

import os
import sys

# The command needs no OpenBLAS thread pool (nothing here multiplies matrices; workers are
# processes), and numpy's import starting one costs ~60 ms of CPU (a tenth of start-up; 2-core
# VM). So, run as the command (python -m, bert-prep) and before numpy is imported, OpenBLAS
# gets one thread unless the user set OPENBLAS_NUM_THREADS; a library caller's process keeps
# its own.
if ((__name__ == "__main__" or os.path.basename(sys.argv[0]) == "bert-prep")
        and "numpy" not in sys.modules):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import app, flags, logging  # noqa: E402  (after the OpenBLAS setting above)

from data_prep import command  # noqa: E402
from data_prep.files import text_files  # noqa: E402
from data_prep.pretraining import instances as inst  # noqa: E402
from data_prep.pretraining.shards import (  # noqa: E402
    RNG_MODES, MASKING_MODES, SUMMARY_NAME, TASKS, TOKENIZERS, Settings,
    create_pretraining_data, plan_inputs, shard_file_name)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The original flags (names and defaults) plus the sharding / worker ones."""
    flags.DEFINE_string("input_file", None, "Input files in the pretraining format: "
                        "comma-separated globs.")
    flags.DEFINE_string("output_file", None, "Output TFRecord file(s), comma-separated: one "
                        "shard each. Or use --output_dir.")
    flags.DEFINE_string("output_dir", None, "Directory for pretraining_data-KKKKK-of-NNNNN "
                        "shards (with --num_shards).")
    flags.DEFINE_integer("num_shards", 0, "Shards under --output_dir (0 = one per input file, "
                         "and one per --max_shard_mb piece of a larger file). More shards than "
                         "files cut the files at document breaks.")
    flags.DEFINE_float("max_shard_mb", 128.0, "Most input text per shard, in MB (10^6 bytes), "
                       "which bounds a worker's memory (~0.16 GB + 4.2 bytes per input byte): "
                       "larger files are cut at document breaks (blank lines) into several "
                       "shards. 0: no limit (one shard can hold the whole input, as in the "
                       "original).")
    flags.DEFINE_string("vocab_file", None, "WordPiece vocabulary file.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case (uncased model).")
    flags.DEFINE_bool("do_whole_word_mask", False, "Mask whole words, not word pieces.")
    flags.DEFINE_enum("wwm_mask_decision", "per_piece", list(inst.WWM_MASK_DECISIONS),
                      "Whole-word masking: the 80/10/10 choice per piece (original) or per "
                      "word.")
    flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked LM predictions per "
                         "sequence.")
    flags.DEFINE_integer("random_seed", 12345, "Random seed (shard k uses random_seed + k).")
    flags.DEFINE_integer("dupe_factor", 10, "Times the input is duplicated with different "
                         "masks.")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
    flags.DEFINE_float("short_seq_prob", 0.1, "Probability of a shorter-than-maximum target.")
    flags.DEFINE_integer("num_workers", 0, "Worker processes (0 = all cores).")
    flags.DEFINE_bool("gzip", False, "GZIP-compress the TFRecords.")
    flags.DEFINE_enum("tokenizer", "python", list(TOKENIZERS), "Same ids either way: the "
                      "table-driven Python FullTokenizer (faster on CPU) or the in-graph "
                      "tensorflow-text BertTextTokenizer.")
    flags.DEFINE_enum("rng", "original", list(RNG_MODES), "original: the original script's "
                      "random draws, instance for instance (compiled). vectorized: the same "
                      "rules and probabilities drawn with numpy in batches (about as fast; "
                      "deterministic, but other instances than the original's).")
    flags.DEFINE_enum("masking", "static", list(MASKING_MODES), "static: write the masked-LM "
                      "masks into the records (the original; --dupe_factor copies with "
                      "different masks). none: write only the token ids and segment layout, "
                      "for run_pretraining --dynamic_masking (--dupe_factor=1 is enough).")
    flags.DEFINE_enum("task", "nsp", list(TASKS), "nsp: sentence pairs with next-sentence "
                      "labels (the original). none: whole sentences packed up to "
                      "--max_seq_length, running on across documents with a [SEP], no "
                      "next-sentence label (for run_pretraining --nsp=false).")
    flags.DEFINE_enum("invalid_utf8", "error", list(text_files.INVALID_UTF8), "error: stop at "
                      "the first input line that is not UTF-8, naming the file and line (as "
                      "the original stops). replace: replace invalid bytes by U+FFFD (which the "
                      "tokenizer drops) with one warning per file.")


def resolve_outputs(output_file: str | None, output_dir: str | None, num_shards: int,
                    num_inputs: int, gzip: bool) -> tuple[list[str], str]:
    """(shard files, summary file) from --output_file or --output_dir/--num_shards."""
    if bool(output_file) == bool(output_dir):
        raise ValueError("give exactly one of --output_file and --output_dir")
    if num_shards < 0:
        raise ValueError(f"--num_shards must be >= 0, got {num_shards}")
    if output_file:
        files = [p.strip() for p in output_file.split(",") if p.strip()]
        if num_shards not in (0, len(files)):
            raise ValueError(f"--num_shards={num_shards} disagrees with the {len(files)} "
                             "file(s) of --output_file")
        return files, files[0] + "." + SUMMARY_NAME
    num_shards = num_shards or num_inputs
    files = [shard_file_name(output_dir, k, num_shards, gzip) for k in range(num_shards)]
    return files, os.path.join(output_dir, SUMMARY_NAME)


def from_flags(values: flags.FlagValues) -> tuple[list[str], list[str], str, Settings]:
    """(input files, shard files, summary file, settings) from parsed define_flags() values.

    Raises ValueError naming the flag. Shared with data_prep/beam_pipeline.py.
    """
    for name in ("input_file", "vocab_file"):
        if not values[name].value:
            raise ValueError(f"--{name} is required")
    input_files = text_files.expand_input_patterns(values.input_file, "input_file")
    options = inst.InstanceOptions(
        max_seq_length=values.max_seq_length, short_seq_prob=values.short_seq_prob,
        masked_lm_prob=values.masked_lm_prob,
        max_predictions_per_seq=values.max_predictions_per_seq,
        do_whole_word_mask=values.do_whole_word_mask,
        wwm_mask_decision=values.wwm_mask_decision)
    settings = Settings(values.vocab_file, values.do_lower_case, options, values.dupe_factor,
                        values.random_seed, values.gzip, values.tokenizer, values.rng,
                        masking=values.masking, task=values.task,
                        invalid_utf8=values.invalid_utf8, max_shard_mb=values.max_shard_mb)
    num_inputs = (len(plan_inputs(input_files, settings)) if values.output_dir
                  and not values.num_shards else len(input_files))
    output_files, summary_file = resolve_outputs(values.output_file, values.output_dir,
                                                 values.num_shards, num_inputs, values.gzip)
    return input_files, output_files, summary_file, settings


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # A ValueError (a bad flag or input) is reported as one line by data_prep.command.
    input_files, output_files, summary_file, settings = from_flags(FLAGS)
    summary = create_pretraining_data(input_files, output_files, settings, FLAGS.num_workers,
                                      summary_file)
    report_outcome(summary, FLAGS.input_file, summary_file)


def report_outcome(summary: dict, input_file: str, summary_file: str) -> None:
    """UsageError when no instance was written; else one log line. Shared with beam_pipeline."""
    if not summary["counts"].get("instances"):
        raise app.UsageError(f"no instances: the files of --input_file={input_file} "
                             "hold no text")
    logging.info("wrote %d shard(s); summary in %s", summary["shards"], summary_file)


def run() -> None:
    """Console-script entry point (bert-prep)."""
    define_flags()
    command.run(main, "bert-prep")


if __name__ == "__main__":
    run()
