"""`hf-resnet`: one command, a sub-command per job.

Each subpackage's `cli.py` adds its sub-commands without importing torch or the training stack;
the work is imported only when a command runs, so `hf-resnet --help` answers at once. `train`
hands its flags to the recipe's own `HfArgumentParser` untouched, so every `TrainingArguments`
flag works there exactly as in `recipes/finetune.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

#: Modules whose `register(subparsers)` adds sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "hf_resnet.training.cli",
    "hf_resnet.tuning.cli",
    "hf_resnet.evaluation.cli",
    "hf_resnet.inference.cli",
    "hf_resnet.deployment.cli",
    "hf_resnet.hub.cli",
    "hf_resnet.data.cli",
)


def _modules() -> list:
    return [importlib.import_module(name) for name in COMMAND_MODULES]


class FullFlagsParser(argparse.ArgumentParser):
    """argparse taking flags only in full, as `hf-resnet train` does: `--mod` must not quietly mean `--model`.

    The sub-commands' parsers are made of the same class (argparse's `add_subparsers` default).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})


def build_parser() -> argparse.ArgumentParser:
    parser = FullFlagsParser(
        prog="hf-resnet",
        description="Fine-tune, evaluate, classify, explain, export and share ResNet image classifiers. "
        "`hf-resnet COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in _modules():
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf_resnet")
    except PackageNotFoundError:
        return "unknown"


def _passthrough() -> dict[str, Callable[[list[str]], int]]:
    """Commands that parse their own flags (`train`'s HfArgumentParser), by name."""
    return {name: run for module in _modules() for name, run in getattr(module, "PASSTHROUGH", {}).items()}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hf-resnet` console script and of `python -m hf_resnet`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own_parser = _passthrough().get(argv[0]) if argv else None
    if own_parser is not None:
        return own_parser(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
