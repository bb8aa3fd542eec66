"""Where images come from and how they become tensors: sources, checks, transforms, datasets."""
