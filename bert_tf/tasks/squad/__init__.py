"""SQuAD v1.1/v2.0: the task (`task`), the original's answer post-processing (`postprocess`)
and the official metrics (`metrics`)."""
