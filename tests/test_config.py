import json
import math

import numpy as np
import pytest

import bert_tf
from bert_tf.layers import activations
from bert_tf.config import BertConfig

ORIGINAL_BASE = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


def test_presets_have_published_sizes():
    expected = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8),
                "medium": (8, 512, 8), "base": (12, 768, 12), "large": (24, 1024, 16)}
    for name, (layers, hidden, heads) in expected.items():
        c = BertConfig.from_preset(name)
        assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (layers, hidden, heads)
        assert c.intermediate_size == 4 * hidden
    assert BertConfig.from_preset("base") == BertConfig.from_dict(ORIGINAL_BASE)
    with pytest.raises(ValueError, match="Unknown BERT preset 'huge'"):
        BertConfig.from_preset("huge")


def test_reads_original_file_and_tolerates_unknown_keys(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**ORIGINAL_BASE, "directionality": "bidi", "pooler_fc_size": 768}))
    config = BertConfig.from_json_file(str(path))
    assert config.hidden_size == 768 and config.vocab_size == 30522
    # The original code's "gelu" is the tanh approximation.
    assert config.hidden_act == "gelu_approximate"


def test_hugging_face_gelu_is_exact(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**ORIGINAL_BASE, "model_type": "bert",
                                "layer_norm_eps": 1e-12, "architectures": ["BertModel"]}))
    assert BertConfig.from_json_file(str(path)).hidden_act == "gelu"
    hf_new = {**ORIGINAL_BASE, "model_type": "bert", "hidden_act": "gelu_new"}
    assert BertConfig.from_dict(hf_new).hidden_act == "gelu_approximate"


def test_write_read_round_trip(tmp_path):
    for act in ("gelu", "gelu_approximate", "relu", "silu"):
        config = BertConfig.from_preset("mini", hidden_act=act, vocab_size=1234)
        path = str(tmp_path / f"{act}.json")
        config.to_json_file(path)
        assert BertConfig.from_json_file(path) == config
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bert_config")]
    # Written files keep the original meaning of "gelu", so the original code reads them right.
    BertConfig.from_preset("tiny").to_json_file(str(tmp_path / "o.json"))
    assert json.loads((tmp_path / "o.json").read_text())["hidden_act"] == "gelu"


@pytest.mark.parametrize("changes, message", [
    ({"hidden_size": 100, "num_attention_heads": 3}, "divisible by num_attention_heads"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
    ({"vocab_size": 12.5}, "vocab_size must be a positive integer"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be in"),
    ({"hidden_act": "mish"}, "Unsupported activation 'mish'"),
])
def test_validation_names_the_key(changes, message):
    with pytest.raises(ValueError, match=message):
        BertConfig.from_dict({**ORIGINAL_BASE, **changes}, where="my_config.json")


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"hidden_size": 768,\n oops}')
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        BertConfig.from_json_file(str(bad))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({**ORIGINAL_BASE, "num_attention_heads": 7}))
    with pytest.raises(ValueError, match="odd.json"):
        BertConfig.from_json_file(str(odd))


def test_activation_functions_match_their_formulas():
    x = np.linspace(-6, 6, 101).astype("float32")
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    erf_form = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(np.asarray(activations.get("gelu_approximate")(x)), tanh_form,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(activations.get("gelu_new")(x)), tanh_form, atol=1e-6)
    np.testing.assert_allclose(np.asarray(activations.get("gelu")(x)), erf_form, atol=1e-6)
    # The two forms really differ, so mixing them up would be caught.
    assert np.abs(tanh_form - erf_form).max() > 1e-4
    np.testing.assert_allclose(np.asarray(activations.get("swish")(x)), x / (1 + np.exp(-x)),
                               atol=1e-6)


def test_encoder_config_is_the_bert_config():
    config = BertConfig.from_preset("tiny", vocab_size=99)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    assert encoder.bert_config == config
    assert BertConfig(**{k: v for k, v in encoder.get_config().items()
                         if k in config.to_dict()}) == config
