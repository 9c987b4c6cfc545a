"""The pretraining task: masked LM + next-sentence prediction, losses and metrics as the original.

Two options beyond the original: `masking` (bert_tf/training/dynamic_masking.py) draws the masks in
the input pipeline instead of reading them, and `nsp=False` trains the masked LM alone.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from bert_tf.training import dynamic_masking, inputs, losses
from bert_tf.config import BertConfig
from bert_tf.models import BertEncoder, BertPretrainer
from bert_tf.tasks.base import Task

MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")


class PretrainingTask(Task):
    """Trains `BertPretrainer` on data_prep's TFRecords.

    Loss = masked_lm_loss + next_sentence_loss. Eval metrics: `masked_lm_accuracy`,
    `masked_lm_loss` (weighted mean over masked positions), `next_sentence_accuracy`,
    `next_sentence_loss`. `full_last_layer` is passed to `BertPretrainer` (default: the last
    block runs on the rows the heads read only, 12-28% less CPU per step at tiny/mini).

    masking: None reads the masks stored in the records (create_pretraining_data
    --masking=static); a `dynamic_masking.MaskingOptions` draws them per batch instead (any
    records; its max_predictions_per_seq is the one used). nsp=False: the loss is the
    masked-LM loss alone, next_sentence_labels are not read (--task=none records have none),
    eval reports only the masked-LM metrics, and the next-sentence head and the pooler (which
    only that head reads) are frozen: they stay in the model and its checkpoints, untrained.
    Records that lack what the settings need fail here, naming the flag and the file.
    """

    # Class defaults: the original task, also for subclasses that skip __init__ (benchmarks).
    masking: dynamic_masking.MaskingOptions | None = None
    nsp: bool = True

    def __init__(self, bert_config: BertConfig, input_file: str, train_batch_size: int,
                 max_seq_length: int = 128, max_predictions_per_seq: int = 20,
                 eval_input_file: str | None = None, eval_batch_size: int = 8,
                 seed: int = 12345, full_last_layer: bool = False,
                 masking: dynamic_masking.MaskingOptions | None = None, nsp: bool = True):
        if max_seq_length > bert_config.max_position_embeddings:
            raise ValueError(f"max_seq_length ({max_seq_length}) exceeds the model's "
                             f"max_position_embeddings ({bert_config.max_position_embeddings}).")
        self.bert_config = bert_config
        self.input_file = input_file
        self.eval_input_file = eval_input_file
        self.train_batch_size = train_batch_size
        self.eval_batch_size = eval_batch_size
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.seed = seed
        self.full_last_layer = full_last_layer
        self.masking = masking
        self.nsp = nsp
        if masking is not None:
            self.max_predictions_per_seq = masking.max_predictions_per_seq
        # Fail fast, before building a model.
        for files, flag in ((input_file, "input_file"), (eval_input_file, "eval_input_file")):
            if files:
                dynamic_masking.check_records(inputs.list_files(files, flag), flag,
                                              masking is not None, nsp)

    def build_model(self, dtype: str) -> keras.Model:
        model = BertPretrainer(BertEncoder.from_bert_config(self.bert_config, dtype=dtype),
                               full_last_layer=self.full_last_layer)
        if not self.nsp:  # no loss reaches them: untrainable instead of None gradients
            model.next_sentence_head.trainable = False
            model.encoder.pooler.trainable = False
        return model

    def _dataset(self, input_file, batch, is_training, input_context, skip_batches=0,
                 flag_name="input_file"):
        return dynamic_masking.dynamic_pretraining_dataset(
            input_file, batch, self.max_seq_length, self.masking, is_training,
            next_sentence=self.nsp, input_context=input_context, skip_batches=skip_batches,
            seed=self.seed, flag_name=flag_name)

    def _static_without_nsp(self, input_file, batch, is_training, input_context,
                            skip_batches=0, flag_name="input_file"):
        # Stored masks, and no next_sentence_labels to require (--task=none records).
        parse = dynamic_masking.record_parser(self.max_seq_length,
                                              self.max_predictions_per_seq,
                                              next_sentence=False, restore=False)
        return inputs.record_dataset(inputs.list_files(input_file, flag_name), batch,
                                     is_training, parse, input_context, skip_batches, self.seed)

    def train_dataset(self, input_context, skip_batches: int) -> tf.data.Dataset:
        batch = input_context.get_per_replica_batch_size(self.train_batch_size)
        if self.masking is not None:
            return self._dataset(self.input_file, batch, True, input_context, skip_batches)
        if not self.nsp:
            return self._static_without_nsp(self.input_file, batch, True, input_context,
                                            skip_batches)
        return inputs.pretraining_dataset(
            self.input_file, batch, self.max_seq_length, self.max_predictions_per_seq,
            is_training=True, input_context=input_context, skip_batches=skip_batches,
            seed=self.seed)

    def has_eval(self) -> bool:
        return bool(self.eval_input_file)

    def input_files(self) -> list[str]:
        return inputs.list_flag_files((self.input_file, "input_file"),
                                      (self.eval_input_file, "eval_input_file"))

    def eval_dataset(self, input_context, max_batches: int | None = None
                     ) -> tf.data.Dataset | None:
        if not self.eval_input_file:
            return None
        batch = input_context.get_per_replica_batch_size(self.eval_batch_size)
        if self.masking is not None:
            ds = self._dataset(self.eval_input_file, batch, False, input_context,
                               flag_name="eval_input_file")
        elif not self.nsp:
            ds = self._static_without_nsp(self.eval_input_file, batch, False, input_context,
                                          flag_name="eval_input_file")
        else:
            ds = inputs.pretraining_dataset(
                self.eval_input_file, batch, self.max_seq_length, self.max_predictions_per_seq,
                is_training=False, input_context=input_context, flag_name="eval_input_file")
        return ds.take(max_batches) if max_batches else ds

    def _forward(self, model, batch, training):
        return model({k: batch[k] for k in MODEL_INPUTS}, training=training)

    def compute_loss(self, model, batch, training):
        out = self._forward(model, batch, training)
        mlm = losses.masked_lm_loss(out["masked_lm_logits"], batch["masked_lm_ids"],
                                    batch["masked_lm_weights"])
        if not self.nsp:
            return mlm, {"masked_lm_loss": mlm}
        nsp = losses.next_sentence_loss(out["next_sentence_logits"],
                                        batch["next_sentence_labels"])
        return mlm + nsp, {"masked_lm_loss": mlm, "next_sentence_loss": nsp}

    def eval_step(self, model, batch):
        out = self._forward(model, batch, training=False)
        mlm_logits = ops.cast(out["masked_lm_logits"], "float32")
        weights = ops.cast(batch["masked_lm_weights"], "float32")
        ids = batch["masked_lm_ids"]
        log_probs = ops.log_softmax(mlm_logits, axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(ids, -1), -1), -1)
        mlm_correct = ops.cast(ops.equal(ops.argmax(mlm_logits, -1), ops.cast(ids, "int64")),
                               "float32")
        totals = {"mlm_weight": ops.sum(weights), "mlm_nll": ops.sum(nll * weights),
                  "mlm_correct": ops.sum(mlm_correct * weights)}
        if not self.nsp:
            return totals
        nsp_logits = ops.cast(out["next_sentence_logits"], "float32")
        labels = ops.reshape(batch["next_sentence_labels"], (-1,))
        nsp_nll = -ops.squeeze(ops.take_along_axis(ops.log_softmax(nsp_logits, -1),
                                                   ops.expand_dims(labels, -1), -1), -1)
        nsp_correct = ops.cast(ops.equal(ops.argmax(nsp_logits, -1),
                                         ops.cast(labels, "int64")), "float32")
        return {**totals, "nsp_count": ops.cast(ops.shape(labels)[0], "float32"),
                "nsp_nll": ops.sum(nsp_nll), "nsp_correct": ops.sum(nsp_correct)}

    def finalize_eval(self, totals):
        weight = max(totals.get("mlm_weight", 0.0), 1e-5)
        count = max(totals.get("nsp_count", 0.0), 1.0)
        mlm = {"masked_lm_accuracy": totals.get("mlm_correct", 0.0) / weight,
               "masked_lm_loss": totals.get("mlm_nll", 0.0) / weight}
        if not self.nsp:
            return mlm
        return {**mlm, "next_sentence_accuracy": totals.get("nsp_correct", 0.0) / count,
                "next_sentence_loss": totals.get("nsp_nll", 0.0) / count}
