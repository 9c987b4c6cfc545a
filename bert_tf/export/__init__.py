"""What leaves a trained model: SavedModels with raw-string signatures (`savedmodel`), token
features (`feature_extraction`) and pooled sentence vectors (`sentence_embedding`)."""
