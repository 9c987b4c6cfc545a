"""Training: the loop (`trainer`: strategies, precision, XLA, accumulation, checkpoints,
SIGTERM, TensorBoard, progress), its input pipelines (`inputs`, `bucketing`,
`dynamic_masking`), losses, metrics, and the device set-up (`distribute`, `cpu_allocator`)."""
