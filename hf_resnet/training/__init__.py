"""Fine-tuning: arguments, the Trainer and its callbacks, losses, metrics, the run itself."""
