"""The network: building a ResNet from a checkpoint or a layout, its named parts, freezing."""
