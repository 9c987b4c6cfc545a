"""A plain-numpy BERT forward pass written from the original paper/code's equations.

It is the independent reference the Keras layers are tested against: separate q/k/v
projections, scale 1/sqrt(head_dim), additive -10000 padding bias, post-LayerNorm blocks.
"""
import math

import numpy as np


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def encoder_forward(weights: dict, config, input_ids, input_mask, segment_ids):
    """weights: our weight paths -> float64 arrays. Returns (sequence_output, pooled_output)."""
    act = {"gelu_approximate": gelu_tanh, "gelu": gelu_erf,
           "relu": lambda x: np.maximum(x, 0)}[config.hidden_act]
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    h_size, heads = config.hidden_size, config.num_attention_heads
    d = h_size // heads
    seq = input_ids.shape[1]
    x = (w["word_embeddings/embeddings"][input_ids]
         + w["position_embeddings/embeddings"][:seq][None]
         + w["segment_embeddings/embeddings"][segment_ids])
    x = layer_norm(x, w["embeddings_layer_norm/gamma"], w["embeddings_layer_norm/beta"],
                   config.layer_norm_eps)
    bias = (1.0 - input_mask[:, None, None, :].astype(np.float64)) * -10000.0
    for i in range(config.num_hidden_layers):
        p = f"transformer_layer_{i}/"
        qkv = x @ w[p + "attention/qkv/kernel"] + w[p + "attention/qkv/bias"]
        q, k, v = (qkv[..., j * h_size:(j + 1) * h_size] for j in range(3))

        def split(t):
            return t.reshape(t.shape[0], seq, heads, d).transpose(0, 2, 1, 3)

        scores = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        context = (softmax(scores) @ split(v)).transpose(0, 2, 1, 3).reshape(x.shape)
        attn = context @ w[p + "attention/output/kernel"] + w[p + "attention/output/bias"]
        x = layer_norm(x + attn, w[p + "attention_layer_norm/gamma"],
                       w[p + "attention_layer_norm/beta"], config.layer_norm_eps)
        inter = act(x @ w[p + "intermediate/kernel"] + w[p + "intermediate/bias"])
        out = inter @ w[p + "output/kernel"] + w[p + "output/bias"]
        x = layer_norm(x + out, w[p + "output_layer_norm/gamma"],
                       w[p + "output_layer_norm/beta"], config.layer_norm_eps)
    pooled = np.tanh(x[:, 0] @ w["pooler/kernel"] + w["pooler/bias"])
    return x, pooled
