"""Deploying a trained run: every form it can take (runtimes, precisions), measured side by side."""
