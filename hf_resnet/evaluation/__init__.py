"""Scoring a model on labelled images: the shipped `evaluate` metric modules and `hf-resnet evaluate`."""
