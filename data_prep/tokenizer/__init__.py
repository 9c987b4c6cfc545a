"""Text -> WordPiece ids with the original tokenizer's rules: the pure-Python statement of the
rules, the fast CPU routes and the in-graph tensorflow-text one (the same ids), and vocab
learning."""
