"""`hf-resnet`: one command, a sub-command per job; each module registers its own."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that contribute a sub-command through `register_cli(subparsers)`.
COMMAND_MODULES = (
    "hf_resnet.inference.classifier",
    "hf_resnet.inference.gradcam",
    "hf_resnet.inference.onnx_export",
    "hf_resnet.hub.push",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-resnet",
        description="Classify, explain, export and share ResNet image classifiers. "
        "Training: accelerate launch recipes/finetune.py --help",
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hf-resnet` console script.

    >>> main(["classify", "cat.jpg", "--model", "outputs/pets"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
