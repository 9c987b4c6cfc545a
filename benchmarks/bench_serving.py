"""Serving throughput, raw strings in: bert_tf's exported SavedModel vs keras-hub.

    python -m benchmarks.bench_serving                  # tiny,mini,base, seq 128, both dtypes
    python -m benchmarks.bench_serving --configs=tiny --repetitions=3 --text=sst2
    python -m benchmarks.bench_serving --configs=mini --text=sst2 --batch=1 --calls=40 \
        --max_wordpieces=16 --intra_op_threads=1 --inter_op_threads=1   # short, 1 thread

Every contender turns a batch of real sentences into two-class logits, with tokenization,
`[CLS] .. [SEP]` packing and padding to --seq inside the graph:

  ours/savedmodel       `bert_tf.export.savedmodel.export_model` of a `BertClassifier`, written to a temp
                        dir, loaded back with `tf.saved_model.load`, called through its
                        `serving_default` signature (`text` in; `logits`, `probabilities`,
                        `label` out), as a Python client of the SavedModel would. The
                        export's default padding: each batch to its longest sentence (a
                        multiple of 8, at most --seq).
  ours/savedmodel-fixed the same export with `pad_to_longest=False`: every batch padded to
                        --seq, as keras-hub's preprocessor does.
  keras_hub/tf.function `keras_hub.models.BertTextClassifier` with its
                        `BertTextClassifierPreprocessor` (BertTokenizer on the same vocab
                        file, lowercase; --keras_hub_strip_accents adds strip_accents=True,
                        which its BertTokenizer leaves off by default, unlike the original
                        do_lower_case), preprocessor + model (`training=False`) in one
                        `tf.function` in the building process: keras-hub's best case.
  keras_hub/savedmodel  the same two layers written with `keras.export.ExportArchive`
                        (string endpoint), loaded back and called through its signature.
                        (`model.export()` alone writes only the id-in model, without the
                        preprocessor.)

Reference rows, to show what the strings cost (ids from our tokenizer, made beforehand):

  ours/savedmodel-ids   the same SavedModel's `serve_ids` signature.
  ours/encoder-ids      our plain BertEncoder (the classifier's) in a `tf.function`.
  keras_hub/model-ids   keras-hub's classifier without its preprocessor, in a `tf.function`.
  ours/tokenize, keras_hub/tokenize   only the string -> packed ids step of each side.

Before timing, the script checks that both sides produce the same input_ids, input mask and
segment ids for every timed sentence. Each repetition makes --calls calls, each on a
different batch of --batch sentences (the same batches for every contender). All contenders
of one (config, dtype) are built in one process and timed interleaved (`benchmarks/common.py`).
"""
from __future__ import annotations

import argparse
import atexit
import csv
import glob
import os
import shutil
import sys
import tempfile

from benchmarks import common

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
DEFAULT_BATCH = {"tiny": 32, "mini": 32, "small": 32, "medium": 16, "base": 8}
# Not in the shipped data (which is all ASCII): strings where keras-hub's tokenizer rules and
# the original BERT rules (ours) can differ. Printed with --probe_unicode.
UNICODE_PROBES = [
    "Die Straße ist groß.", "soft\u00adhyphen", "zero\u200bwidth space", "café naïve Ünïcödé",
    "ΟΔΥΣΣΕΥΣ", "a\x00b\x07c", "İstanbul", "ﬁne ligature", "“quoted” — dash…",
    "line\u00a0break", "x\u2028y", "Ⅻ ①", "日本語 text", "emoji 😀 ok",
]
TEXT = ("ours/savedmodel", "ours/savedmodel-fixed", "keras_hub/tf.function",
        "keras_hub/savedmodel")
REFERENCE = ("ours/savedmodel-ids", "ours/encoder-ids", "keras_hub/model-ids",
             "ours/tokenize", "keras_hub/tokenize")


def vocab_size(path: str = VOCAB_FILE) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def load_sentences(source: str, count: int, seed: int = 0, max_wordpieces: int = 0
                   ) -> list[str]:
    """`count` sentences of shipped real text (see data/SOURCES.md), shuffled with `seed`.

    corpus: data/corpus_sentences/*.txt, raw cased book text, one sentence a line.
    sst2:   data/sst2/dev.tsv then train.tsv, the `sentence` column (lower-cased, tokenised).
    max_wordpieces > 0 keeps only sentences whose packed `[CLS] .. [SEP]` length (our
    tokenizer) is at most that: "a short sentence" rather than the source's own mix.
    """
    if source == "corpus":
        lines = []
        for path in sorted(glob.glob(os.path.join(REPO, "data", "corpus_sentences", "*.txt"))):
            with open(path, encoding="utf-8") as f:
                lines += [line.strip() for line in f if line.strip()]
    elif source == "sst2":
        lines = []
        for name in ("dev.tsv", "train.tsv"):
            with open(os.path.join(REPO, "data", "sst2", name), encoding="utf-8") as f:
                lines += [row["sentence"].strip() for row in
                          csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    else:
        raise ValueError(f"--text must be corpus or sst2, got {source!r}")
    if max_wordpieces > 0:
        from bert_tf.export.savedmodel import PreprocessingModule

        pre = PreprocessingModule(VOCAB_FILE, do_lower_case=True, seq_length=max_wordpieces)
        packed = pre.tokenize(tf.constant(lines)).row_lengths().numpy() + 2
        lines = [line for line, n in zip(lines, packed) if n <= max_wordpieces]
    if count > len(lines):
        raise ValueError(f"asked for {count} sentences, {source} has {len(lines)}"
                         + (f" of at most {max_wordpieces} WordPieces" if max_wordpieces else ""))
    order = np.random.default_rng(seed).permutation(len(lines))[:count]
    return [lines[i] for i in order]


# --- tokenization check ---------------------------------------------------------------------
def check_tokenization(sentences: list[str], seq: int, strip_accents: bool = False
                        ) -> tuple[str, list[str], dict]:
    """Both sides' packed inputs for `sentences`; returns (one-line result, diffs, our ids)."""
    import keras_hub
    from bert_tf.export.savedmodel import PreprocessingModule

    ours = PreprocessingModule(VOCAB_FILE, do_lower_case=True, seq_length=seq)
    theirs = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=keras_hub.models.BertTokenizer(vocabulary=VOCAB_FILE, lowercase=True,
                                                 strip_accents=strip_accents),
        sequence_length=seq)
    text = tf.constant(sentences)
    a = {k: v.numpy() for k, v in ours.serving_default(text).items()}
    b = {k: v.numpy() for k, v in tf.function(theirs)(text).items()}
    pairs = (("input_ids", "token_ids"), ("input_mask", "padding_mask"),
             ("segment_ids", "segment_ids"))
    differ = np.zeros(len(sentences), bool)
    for ka, kb in pairs:
        differ |= (a[ka] != b[kb].astype(a[ka].dtype)).any(axis=1)
    diffs = []
    if differ.any():
        vocab = [line.rstrip("\n") for line in open(VOCAB_FILE, encoding="utf-8")]
        for i in np.nonzero(differ)[0]:
            n_a, n_b = int(a["input_mask"][i].sum()), int(b["padding_mask"][i].sum())
            diffs.append(f"  sentence {i}: {sentences[i][:100]!r}\n"
                         f"    ours:      {[vocab[t] for t in a['input_ids'][i][:n_a]]}\n"
                         f"    keras-hub: {[vocab[t] for t in b['token_ids'][i][:n_b]]}")
    lengths = ours.tokenize(text).row_lengths().numpy()
    stats = (f"wordpieces per sentence: mean {lengths.mean():.1f}, max {lengths.max()}, "
             f"{(lengths > seq - 2).mean() * 100:.0f}% truncated to {seq}")
    if differ.any():
        line = (f"tokenization check: {int(differ.sum())} of {len(sentences)} sentences "
                f"DIFFER (ids, mask or segments; {stats})")
    else:
        line = (f"tokenization check: ids, mask and segments identical on all "
                f"{len(sentences)} timed sentences ({stats})")
    return line, diffs, a


# --- contenders -----------------------------------------------------------------------------
def _runner(fn, batches: list, calls: int, keep: list):
    """`calls` calls of `fn`, on batches in turn. `keep` holds the objects `fn` needs alive
    (a tf.function method only keeps a weak reference to its module)."""
    def run():
        assert keep is not None
        out = None
        for i in range(calls):
            out = fn(batches[i % len(batches)])
        first = out[sorted(out)[0]] if isinstance(out, dict) else out
        return first.numpy()  # blocks until the last call is done
    return run


def build_ours(size: str, dtype: str, seq: int, workdir: str, pad_to_longest: bool = True):
    """(classifier, loaded SavedModel); the export is written under `workdir`."""
    import bert_tf
    from bert_tf.config import BertConfig
    from bert_tf.export.savedmodel import export_model

    encoder = bert_tf.BertEncoder.from_bert_config(
        BertConfig.from_preset(size, vocab_size=vocab_size()), dtype=dtype)
    model = bert_tf.BertClassifier(encoder, num_classes=2)
    export_dir = os.path.join(workdir, f"ours-{size}-{dtype}-{pad_to_longest}")
    export_model(model, export_dir, VOCAB_FILE, do_lower_case=True, seq_length=seq,
                 pad_to_longest=pad_to_longest)
    return model, tf.saved_model.load(export_dir)


def build_keras_hub(size: str, dtype: str, seq: int, strip_accents: bool = False):
    import keras_hub

    backbone = common.keras_hub_backbone(size, dtype)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB_FILE, lowercase=True,
                                               strip_accents=strip_accents)
    if backbone.vocabulary_size != tokenizer.vocabulary_size():
        raise ValueError(f"keras-hub backbone vocab {backbone.vocabulary_size} != vocab file "
                         f"{tokenizer.vocabulary_size()}")
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=seq)
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2,
                                                preprocessor=preprocessor)
    return model, preprocessor


def export_keras_hub(model, preprocessor, export_dir: str):
    """keras-hub's preprocessor + classifier as one string-in SavedModel; returns it loaded."""
    preprocessor(tf.constant(["build"]))  # ExportArchive only tracks built layers
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)
    archive.add_endpoint(
        "serve", lambda text: {"logits": model(preprocessor(text), training=False)},
        input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.write_out(export_dir, verbose=False)
    return tf.saved_model.load(export_dir)


def contenders_for(size: str, dtype: str, args, text_batches: list, id_batches: list,
                   workdir: str, with_peer: bool, wanted: set) -> list:
    items = len(text_batches[0]) * args.calls
    out, keep = [], []

    def add(name, make):
        if name not in wanted:
            return
        try:
            out.append(common.Contender(name, _runner(*make(), args.calls, keep), items))
        except Exception as e:  # noqa: BLE001 - reported in the table
            c = common.Contender(name, lambda: None, items)
            c.error = f"build: {type(e).__name__}: {e}"[:300]
            print(f"  {name}: {c.error}")
            out.append(c)

    text = [tf.constant(b) for b in text_batches]
    ids = [{k: tf.constant(v) for k, v in b.items()} for b in id_batches]
    model, loaded = build_ours(size, dtype, args.seq, workdir)
    text_sig = loaded.signatures["serving_default"]
    ids_sig = loaded.signatures["serve_ids"]

    @tf.function
    def encoder_ids(batch):
        result = model.encoder(batch, training=False)
        return {"pooled_output": result["pooled_output"],
                "sequence_output": result["sequence_output"]}

    from bert_tf.export.savedmodel import PreprocessingModule
    ours_pre = PreprocessingModule(VOCAB_FILE, do_lower_case=True, seq_length=args.seq)
    keep += [model, loaded, ours_pre]

    add("ours/savedmodel", lambda: (lambda t: text_sig(text=t), text))

    def fixed():
        # The same weights: export the classifier that build_ours made, padding to --seq.
        from bert_tf.export.savedmodel import export_model
        export_dir = os.path.join(workdir, f"ours-{size}-{dtype}-fixed")
        export_model(model, export_dir, VOCAB_FILE, do_lower_case=True, seq_length=args.seq,
                     pad_to_longest=False)
        loaded_fixed = tf.saved_model.load(export_dir)
        keep.append(loaded_fixed)
        sig = loaded_fixed.signatures["serving_default"]
        return (lambda t: sig(text=t)), text

    add("ours/savedmodel-fixed", fixed)
    add("ours/savedmodel-ids", lambda: (lambda b: ids_sig(**b), ids))
    add("ours/encoder-ids", lambda: (encoder_ids, ids))
    add("ours/tokenize", lambda: (ours_pre.serving_default, text))
    if with_peer:
        kh_model, kh_pre = build_keras_hub(size, dtype, args.seq,
                                           args.keras_hub_strip_accents)
        keep += [kh_model, kh_pre]

        @tf.function
        def kh_text(t):
            return kh_model(kh_pre(t), training=False)

        kh_ids = [{"token_ids": b["input_ids"], "padding_mask": b["input_mask"],
                   "segment_ids": b["segment_ids"]} for b in ids]

        @tf.function
        def kh_model_ids(batch):
            return kh_model(batch, training=False)

        add("keras_hub/tf.function", lambda: (kh_text, text))

        def kh_saved():
            kh_loaded = export_keras_hub(kh_model, kh_pre, os.path.join(
                workdir, f"keras_hub-{size}-{dtype}"))
            keep.append(kh_loaded)
            sig = kh_loaded.signatures["serving_default"]
            return (lambda t: sig(text=t)), text

        add("keras_hub/savedmodel", kh_saved)
        add("keras_hub/model-ids", lambda: (kh_model_ids, kh_ids))
        add("keras_hub/tokenize", lambda: (tf.function(kh_pre), text))
    order = TEXT + REFERENCE
    return sorted(out, key=lambda c: order.index(c.name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,mini,base")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=None,
                        help="sentences per call (default per config: %s)" % DEFAULT_BATCH)
    parser.add_argument("--dtype", default="float32,mixed_bfloat16")
    parser.add_argument("--text", default="corpus", choices=("corpus", "sst2"),
                        help="corpus: data/corpus_sentences (raw cased book text); "
                             "sst2: data/sst2 sentences (lower-cased, tokenised)")
    parser.add_argument("--peers", default="keras_hub", help="keras_hub or empty")
    parser.add_argument("--contenders", default=",".join(TEXT + REFERENCE),
                        help="comma list out of: " + ", ".join(TEXT + REFERENCE))
    parser.add_argument("--calls", type=int, default=5,
                        help="calls per repetition, each on its own batch")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--max_wordpieces", type=int, default=0,
                        help="only sentences of at most this many WordPieces with [CLS] and "
                             "[SEP] (0: any length)")
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="TensorFlow intra-op threads for every contender (0: TF's "
                             "default, one per core)")
    parser.add_argument("--inter_op_threads", type=int, default=0,
                        help="TensorFlow inter-op threads (0: TF's default)")
    parser.add_argument("--keras_hub_strip_accents", action="store_true",
                        help="BertTokenizer(strip_accents=True); its default is False even "
                             "with lowercase=True, unlike the original do_lower_case")
    parser.add_argument("--probe_unicode", action="store_true",
                        help="also compare both tokenizers on a few non-ASCII strings")
    common.add_allocator_argument(parser)
    args = parser.parse_args(argv)
    # Process-wide, like a server's own thread settings (TF Serving's
    # --tensorflow_intra_op_parallelism); they must be set before TF runs any op.
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    allocator_line = common.choose_allocator(args.cpu_allocator)

    wanted = set(common.parse_list(args.contenders))
    unknown = wanted - set(TEXT + REFERENCE)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}")
    with_peer = "keras_hub" in common.parse_list(args.peers)
    workdir = tempfile.mkdtemp(prefix="bench_serving-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)

    print("\n".join(common.environment_lines(["tensorflow", "keras", "keras-hub",
                                              "tensorflow-text"])))
    print(allocator_line)
    intra = tf.config.threading.get_intra_op_parallelism_threads()  # what TF will use
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    print(f"threads: intra-op {intra or 'default'}, inter-op {inter or 'default'}, "
          f"for every contender")
    print(f"vocab: {os.path.relpath(VOCAB_FILE, REPO)} ({vocab_size()} entries), "
          f"text: {args.text}")
    rows, summary, costs, checks = [], [], [], []
    if args.probe_unicode and with_peer:
        line, diffs, _ = check_tokenization(UNICODE_PROBES, args.seq,
                                            args.keras_hub_strip_accents)
        print("\nnon-ASCII probes: " + line.split(": ", 1)[1].split(" (")[0]
              + "".join("\n" + d for d in diffs))
    for size in common.parse_list(args.configs):
        batch = args.batch or DEFAULT_BATCH[size]
        sentences = load_sentences(args.text, batch * args.calls,
                                   max_wordpieces=args.max_wordpieces)
        text_batches = [sentences[i:i + batch] for i in range(0, len(sentences), batch)]
        ids_all = None
        if with_peer:
            line, diffs, ids_all = check_tokenization(sentences, args.seq,
                                                      args.keras_hub_strip_accents)
            print(f"\n{line}" + ("".join("\n" + d for d in diffs)))
            checks.append(f"{size} (batch {batch}): {line}")
        if ids_all is None:
            from bert_tf.export.savedmodel import PreprocessingModule
            pre = PreprocessingModule(VOCAB_FILE, do_lower_case=True, seq_length=args.seq)
            ids_all = {k: v.numpy() for k, v in pre.serving_default(
                tf.constant(sentences)).items()}
        id_batches = [{k: v[i:i + batch] for k, v in ids_all.items()}
                      for i in range(0, len(sentences), batch)]
        for dtype in common.parse_list(args.dtype):
            print(f"\n== {size} seq {args.seq} batch {batch} {dtype}")
            contenders = contenders_for(size, dtype, args, text_batches, id_batches, workdir,
                                        with_peer, wanted)
            common.interleave([c for c in contenders if c.error is None], args.repetitions)
            by_name = {c.name: c for c in contenders}
            for c in contenders:
                rows.append([size, dtype, *c.name.split("/")]
                            + common.timing_cells(c, args.calls))

            def ok(name):
                c = by_name.get(name)
                return c if c is not None and c.error is None and c.times else None

            ours = ok("ours/savedmodel")
            for peer_name in ("ours/savedmodel-fixed", "keras_hub/tf.function",
                              "keras_hub/savedmodel"):
                peer = ok(peer_name)
                if ours and peer:
                    summary.append([size, dtype, peer_name, f"{ours.rate:.1f}",
                                    f"{peer.rate:.1f}", f"{ours.rate / peer.rate:.2f}x",
                                    f"{peer.cpu_median / ours.cpu_median:.2f}x"])
            for side, text_name, ids_name in (
                    ("ours", "ours/savedmodel", "ours/savedmodel-ids"),
                    ("keras_hub", "keras_hub/tf.function", "keras_hub/model-ids")):
                t, i, k = ok(text_name), ok(ids_name), ok(f"{side}/tokenize")
                if t and i:
                    def ms(c, attr):
                        return 1000 * getattr(c, attr) / args.calls if c else float("nan")
                    costs.append([size, dtype, f"{text_name} vs {ids_name.split('/')[1]}",
                                  f"{ms(t, 'median'):.1f} / {ms(t, 'cpu_median'):.1f}",
                                  f"{ms(i, 'median'):.1f} / {ms(i, 'cpu_median'):.1f}",
                                  f"{ms(t, 'cpu_median') - ms(i, 'cpu_median'):+.1f}",
                                  f"{ms(k, 'median'):.2f} / {ms(k, 'cpu_median'):.2f}"])
            shutil.rmtree(workdir, ignore_errors=True)
            os.makedirs(workdir, exist_ok=True)
            del contenders
            keras.backend.clear_session()

    common.print_table(f"Serving, raw strings in, seq {args.seq} (median of {args.repetitions} "
                       f"repetitions of {args.calls} calls; sentences/s)",
                       ["config", "dtype", "side", "what"] + common.timing_columns("sent", "call"),
                       rows)
    if summary:
        common.print_table("ours/savedmodel vs the fixed-length export and keras-hub (strings in)",
                           ["config", "dtype", "baseline", "ours sent/s", "baseline sent/s",
                            "ours/baseline (median)", "baseline/ours (cpu time)"], summary)
    if costs:
        common.print_table("What the strings cost (ms per call, wall median / cpu median)",
                           ["config", "dtype", "text vs ids", "text", "ids",
                            "text - ids (cpu-ms)", "tokenize only"], costs)
    for line in checks:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
