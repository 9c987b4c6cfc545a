"""The pretraining-data stage: raw books -> documents -> NSP pairs or packed sentences ->
masked-LM instances -> sharded, resumable TFRecords."""
