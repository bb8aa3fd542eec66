"""Fitting a run to the machine it runs on: threads, workers, precision, host memory, signals from launchers."""
