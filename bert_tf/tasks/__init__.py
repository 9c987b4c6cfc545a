"""Tasks: what each task builds, reads and scores (`base.Task`), one module or subpackage per
task family: pretraining, classification, squad, tagging."""
