"""A run's configuration: the argument dataclasses, their checks, flags/config files/recipes in, `--help` out."""
