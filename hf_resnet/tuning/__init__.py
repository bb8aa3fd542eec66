"""Choosing a run's settings: the learning-rate range test (`hf-resnet lr-find`) and hyperparameter search."""
