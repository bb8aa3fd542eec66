"""Fine-tuning: the Trainer and its parts (optimizer groups, loss, weight average, checkpoints), the run itself."""
