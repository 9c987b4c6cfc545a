"""Task feature writers: GLUE TSV, SQuAD JSON and CoNLL files -> cached feature TFRecords."""
