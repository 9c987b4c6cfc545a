"""A plain, single-process re-implementation of google-research/bert create_pretraining_data.

Written from the algorithm's rules (not copied), on token STRINGS and with the original's
structure: create_training_instances -> create_instances_from_document ->
create_masked_lm_predictions, then write_instance_to_example_files building one
tf.train.Example per instance.  It is the oracle that data_prep.pretraining.instances must match draw for
draw, and the stand-in for the original script in benchmarks/bench_create_pretraining_data.py.
Not part of the library: obvious rather than fast.
"""
from __future__ import annotations

import collections
import random

MaskedLm = collections.namedtuple("MaskedLm", ["index", "label"])


class TrainingInstance:
    """tokens / segment_ids / is_random_next / masked_lm_positions / masked_lm_labels."""

    def __init__(self, tokens, segment_ids, masked_lm_positions, masked_lm_labels,
                 is_random_next):
        self.tokens = tokens
        self.segment_ids = segment_ids
        self.is_random_next = is_random_next
        self.masked_lm_positions = masked_lm_positions
        self.masked_lm_labels = masked_lm_labels


def read_documents(input_files, tokenizer):
    """Blank lines separate documents; documents run on across files, as in the original."""
    all_documents = [[]]
    for input_file in input_files:
        with open(input_file, "r", encoding="utf-8") as reader:
            for line in reader:
                line = line.strip()
                if not line:
                    all_documents.append([])
                tokens = tokenizer.tokenize(line)
                if tokens:
                    all_documents[-1].append(tokens)
    return all_documents


def create_training_instances(all_documents, vocab_words, max_seq_length, dupe_factor,
                              short_seq_prob, masked_lm_prob, max_predictions_per_seq, rng,
                              do_whole_word_mask=False):
    """all_documents: list of documents, each a list of segments of token strings."""
    all_documents = [d for d in all_documents if d]
    rng.shuffle(all_documents)
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            instances.extend(create_instances_from_document(
                all_documents, document_index, max_seq_length, short_seq_prob,
                masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                do_whole_word_mask))
    rng.shuffle(instances)
    return instances


def create_instances_from_document(all_documents, document_index, max_seq_length,
                                   short_seq_prob, masked_lm_prob, max_predictions_per_seq,
                                   vocab_words, rng, do_whole_word_mask):
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances = []
    current_chunk = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])

                tokens_b = []
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    num_unused_segments = len(current_chunk) - a_end
                    i -= num_unused_segments
                else:
                    is_random_next = False
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                assert len(tokens_a) >= 1
                assert len(tokens_b) >= 1

                tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                tokens, positions, labels = create_masked_lm_predictions(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                    do_whole_word_mask)
                instances.append(TrainingInstance(tokens, segment_ids, positions, labels,
                                                  is_random_next))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq,
                                 vocab_words, rng, do_whole_word_mask):
    cand_indexes = []
    for i, token in enumerate(tokens):
        if token == "[CLS]" or token == "[SEP]":
            continue
        if do_whole_word_mask and len(cand_indexes) >= 1 and token.startswith("##"):
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)

    output_tokens = list(tokens)
    num_to_predict = min(max_predictions_per_seq,
                         max(1, int(round(len(tokens) * masked_lm_prob))))
    masked_lms = []
    covered_indexes = set()
    for index_set in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        if any(index in covered_indexes for index in index_set):
            continue
        for index in index_set:
            covered_indexes.add(index)
            if rng.random() < 0.8:
                masked_token = "[MASK]"
            elif rng.random() < 0.5:
                masked_token = tokens[index]
            else:
                masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            output_tokens[index] = masked_token
            masked_lms.append(MaskedLm(index=index, label=tokens[index]))
    assert len(masked_lms) <= num_to_predict
    masked_lms.sort(key=lambda x: x.index)
    return (output_tokens, [p.index for p in masked_lms], [p.label for p in masked_lms])


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_num_tokens:
            break
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc_tokens) >= 1
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                    max_predictions_per_seq, output_files):
    """Round-robin over output_files, one tf.train.Example built per instance (as the original)."""
    import tensorflow as tf

    writers = [tf.io.TFRecordWriter(path) for path in output_files]
    writer_index = 0
    for instance in instances:
        input_ids = tokenizer.convert_tokens_to_ids(instance.tokens)
        input_mask = [1] * len(input_ids)
        segment_ids = list(instance.segment_ids)
        while len(input_ids) < max_seq_length:
            input_ids.append(0)
            input_mask.append(0)
            segment_ids.append(0)
        masked_lm_positions = list(instance.masked_lm_positions)
        masked_lm_ids = tokenizer.convert_tokens_to_ids(instance.masked_lm_labels)
        masked_lm_weights = [1.0] * len(masked_lm_ids)
        while len(masked_lm_positions) < max_predictions_per_seq:
            masked_lm_positions.append(0)
            masked_lm_ids.append(0)
            masked_lm_weights.append(0.0)
        features = collections.OrderedDict()
        features["input_ids"] = _int_feature(tf, input_ids)
        features["input_mask"] = _int_feature(tf, input_mask)
        features["segment_ids"] = _int_feature(tf, segment_ids)
        features["masked_lm_positions"] = _int_feature(tf, masked_lm_positions)
        features["masked_lm_ids"] = _int_feature(tf, masked_lm_ids)
        features["masked_lm_weights"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=masked_lm_weights))
        features["next_sentence_labels"] = _int_feature(tf, [1 if instance.is_random_next else 0])
        example = tf.train.Example(features=tf.train.Features(feature=features))
        writers[writer_index].write(example.SerializeToString())
        writer_index = (writer_index + 1) % len(writers)
    for writer in writers:
        writer.close()
    return len(instances)


def _int_feature(tf, values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def run(input_files, tokenizer, output_files, max_seq_length=128, max_predictions_per_seq=20,
        random_seed=12345, dupe_factor=10, masked_lm_prob=0.15, short_seq_prob=0.1,
        do_whole_word_mask=False):
    """The original script's main() on plain arguments; returns the number of instances."""
    rng = random.Random(random_seed)
    documents = read_documents(input_files, tokenizer)
    instances = create_training_instances(
        documents, list(tokenizer.vocab.keys()), max_seq_length, dupe_factor, short_seq_prob,
        masked_lm_prob, max_predictions_per_seq, rng, do_whole_word_mask)
    return write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                           max_predictions_per_seq, output_files)
