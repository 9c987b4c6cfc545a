"""Files in and out: input globs and UTF-8 text read in streams, TFRecords written without
TensorFlow, atomic writes and input fingerprints."""
