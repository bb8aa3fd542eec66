"""Scoring predictions: the shipped `evaluate` metric modules by name, and the figures drawn from their results."""
