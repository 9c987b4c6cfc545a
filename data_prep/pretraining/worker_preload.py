"""Imported once by create_pretraining_data's fork server; its workers fork from that process.

(The fork server is used where the calling process has TensorFlow loaded or other threads, as
a library caller may; the command line forks its workers from itself instead, after loading
the same kernels: shards._pool_context.)

So every worker starts with TensorFlow, the tokenizer modules and the compiled kernels
(instances_compiled, records, record_kernels, token_table,
wordpiece_compiled) already loaded, instead of
paying ~4 s + ~1 s each.
"""
from data_prep.pretraining import shards  # noqa: F401
from data_prep.pretraining import instances_compiled, records, record_kernels
from data_prep.tokenizer import token_table
from data_prep.files import tfrecords  # noqa: F401
from data_prep.tokenizer import tokenization  # noqa: F401
from data_prep.tokenizer import wordpiece_compiled

instances_compiled.warm_up()
records.warm_up()
record_kernels.warm_up()
token_table.warm_up()
wordpiece_compiled.warm_up()
