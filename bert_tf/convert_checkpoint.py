"""Converts a BERT checkpoint between the original TF1, Hugging Face and Keras formats.

    python -m bert_tf.convert_checkpoint --source=uncased_L-12_H-768_A-12/bert_model.ckpt
        --output=bert_base_keras --output_format=keras --model=pretrainer    (one line)
    bert-convert --source=all-MiniLM-L6-v2/ --output=minilm_tf1 --output_format=tf1

The output directory is built under a temporary name beside it and renamed into place, so it
appears complete or not at all. It holds the weights, the config json (`bert_config.json`;
Hugging Face output: `config.json`) and `vocab.txt` when one lies beside the source.
Library use: `convert(...)` takes plain arguments; flags are read in `main` only.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

from absl import app, flags

from data_prep import command

_LOG = logging.getLogger(__name__)

OUTPUT_FORMATS = ("keras", "tf1", "huggingface")
MODELS = ("encoder", "pretrainer")
# What each output format writes its weights as, inside the output directory.
WEIGHT_NAMES = {"keras": "model.keras", "tf1": "bert_model.ckpt",
                "huggingface": "model.safetensors"}

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this script's flags; called by `run` only, so importing defines nothing."""
    flags.DEFINE_string("source", None, "Checkpoint to read: a TF1 prefix "
                        "(.../bert_model.ckpt), a Hugging Face file (model.safetensors, "
                        "pytorch_model.bin) or a directory holding either.")
    flags.DEFINE_enum("source_format", "auto", ["auto", "tf1", "huggingface"],
                      "Format of --source; auto detects it.")
    flags.DEFINE_string("bert_config_file", None, "bert_config.json or config.json; default: "
                        "the one beside the checkpoint.")
    flags.DEFINE_integer("num_attention_heads", None, "Only without a config file: the number "
                         "of attention heads (the weights do not determine it).")
    flags.DEFINE_string("output", None, "Output directory (must not exist unless --overwrite).")
    flags.DEFINE_enum("output_format", "keras", list(OUTPUT_FORMATS), "keras: model.keras; "
                      "tf1: original variable names; huggingface: model.safetensors.")
    flags.DEFINE_enum("model", "encoder", list(MODELS), "encoder: BertEncoder; pretrainer: "
                      "BertPretrainer (also converts the masked-LM and next-sentence heads).")
    flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")


def convert(source: str, output: str, source_format: str = "auto",
            output_format: str = "keras", model: str = "encoder",
            bert_config_file: str | None = None, num_attention_heads: int | None = None,
            overwrite: bool = False):
    """Reads `source`, builds a `model` ("encoder" or "pretrainer"), writes `output`.

    Returns the `LoadReport` of the read. Raises ValueError on a checkpoint that does not
    match the config, FileExistsError when `output` exists and not `overwrite`.
    """
    # Heavy imports here, so `--help` answers without loading TensorFlow.
    import bert_tf  # pylint: disable=import-outside-toplevel
    from bert_tf import checkpoints  # pylint: disable=import-outside-toplevel

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}.")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}.")
    output = os.path.abspath(output)
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it.")

    source_format = checkpoints.detect_format(source) if source_format == "auto" else source_format
    config = checkpoints.infer_bert_config(source, source_format, bert_config_file,
                                           num_attention_heads)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    network = bert_tf.BertPretrainer(encoder) if model == "pretrainer" else encoder
    report = checkpoints.load_checkpoint(network, source, source_format)

    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", dir=parent)
    try:
        _write(network, config, output_format, staging)
        vocab = os.path.join(source if os.path.isdir(source) else os.path.dirname(source),
                             "vocab.txt")
        if os.path.isfile(vocab):
            shutil.copyfile(vocab, os.path.join(staging, "vocab.txt"))
        _make_readable(staging)
        _replace_dir(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _LOG.info("wrote %s (%s, %s)", output, output_format, model)
    return report


def _write(network, config, output_format: str, directory: str) -> None:
    import json  # pylint: disable=import-outside-toplevel
    from bert_tf import checkpoints  # pylint: disable=import-outside-toplevel

    weights = os.path.join(directory, WEIGHT_NAMES[output_format])
    if output_format == "keras":
        network.save(weights)
        config.to_json_file(os.path.join(directory, "bert_config.json"))
    elif output_format == "tf1":
        checkpoints.save_tf1_checkpoint(network, weights)
        # The state file lets `tf.train.latest_checkpoint(directory)` find the prefix.
        with open(os.path.join(directory, "checkpoint"), "w", encoding="utf-8") as f:
            name = WEIGHT_NAMES["tf1"]
            f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        config.to_json_file(os.path.join(directory, "bert_config.json"))
    else:
        checkpoints.save_huggingface_safetensors(network, weights)
        has_heads = "masked_lm_head/output_bias" in checkpoints.names.model_weights(network)
        values = checkpoints.huggingface_config_dict(
            config, "BertForPreTraining" if has_heads else "BertModel")
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=True)
            f.write("\n")


def _make_readable(directory: str) -> None:
    """Gives the tree the umask's permissions: mkdtemp/mkstemp create it private (0700/0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def _replace_dir(staging: str, output: str) -> None:
    """Renames `staging` to `output`; an existing `output` is moved aside first, then removed."""
    old = None
    if os.path.exists(output):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.old.",
                               dir=os.path.dirname(output))
        os.rmdir(old)
        os.rename(output, old)
    os.rename(staging, output)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for name in ("source", "output"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    logging.getLogger().setLevel(logging.INFO)
    report = convert(FLAGS.source, FLAGS.output, source_format=FLAGS.source_format,
                     output_format=FLAGS.output_format, model=FLAGS.model,
                     bert_config_file=FLAGS.bert_config_file,
                     num_attention_heads=FLAGS.num_attention_heads, overwrite=FLAGS.overwrite)
    print(report.summary())
    print(f"wrote {os.path.abspath(FLAGS.output)}")


def run() -> None:
    """Console entry point `bert-convert`."""
    define_flags()
    command.run(main, "bert-convert")


if __name__ == "__main__":
    run()
