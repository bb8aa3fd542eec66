"""`hf-resnet train`: the recipe as a sub-command, the same entry point as `recipes/finetune.py`.

Its flags are `HfArgumentParser`'s over the run's dataclasses, which import torch and
transformers. So that `hf-resnet train --help` and `--help-all` answer at once, they are printed
from copies rendered at release time (`make help-text`); a test keeps the copies equal to the live ones.
Likewise a flag that is not one of ours (a typo, an abbreviation, a timm or torchvision flag with no
equivalent) or a value out of its declared range is refused before torch is imported, from the shipped
flag table (config/train_flags.json, also rendered from the parser and kept equal to it by a test).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

#: The rendered `hf-resnet train --help` and `--help-all`, shipped in hf_resnet/config beside the parser.
HELP_FILE = "train_help.txt"
HELP_ALL_FILE = "train_help_all.txt"


def help_text(everything: bool = False) -> str:
    name = HELP_ALL_FILE if everything else HELP_FILE
    return resources.files("hf_resnet.config").joinpath(name).read_text(encoding="utf-8")


#: What `hf-resnet distill --help` says before train's flags, which are its own.
DISTILL_HELP = """usage: hf-resnet distill --teacher TEACHER [CONFIG] [--recipe RECIPE] [--flags]

Knowledge distillation: train a model (a checkpoint or --arch, any supported family) with the usual recipe on a
loss that mixes the labels with a trained teacher's temperature-softened outputs on the same augmented batches.
--teacher (an hf_resnet run folder or Hub id, trained on the data's classes) is required; --distill_alpha and
--distill_temperature set the mix. The output is an ordinary run folder. Every flag of hf-resnet train applies:

"""


def run_train(argv: list[str], command: str = "train") -> int:
    """`hf-resnet train [CONFIG] [--recipe RECIPE] [--flags]`: print the help, or run the recipe."""
    preface = DISTILL_HELP if command == "distill" else ""
    if "--help-all" in argv:
        sys.stdout.write(preface + help_text(everything=True))
        return 0
    if any(arg in ("-h", "--help") for arg in argv):
        sys.stdout.write(preface + help_text())
        return 0
    from ..config.foreign_flags import check_command_line

    try:
        check_command_line(argv)
    except ValueError as error:  # every rank of a launch has the same command line: the first one says it
        if os.environ.get("RANK", "0") == "0":
            print(f"hf-resnet {command}: error: {error}", file=sys.stderr, flush=True)
        return 2
    from .recipe import main

    return main(argv, distill=command == "distill")


def run_distill(argv: list[str]) -> int:
    """`hf-resnet distill --teacher TEACHER [--flags]`: train with a teacher, which it requires."""
    return run_train(argv, command="distill")


#: Commands whose flags go to their own parser untouched (see hf_resnet/cli.py).
PASSTHROUGH = {"train": run_train, "distill": run_distill}


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser(
        "train",
        add_help=False,
        help="fine-tune a ResNet: hf-resnet train [CONFIG | --config NAME] [--recipe RECIPE] [--flags]; train --help "
        "lists the flags by subject, --help-all every one",
    )
    subparsers.add_parser(
        "distill",
        add_help=False,
        help="train a student on a teacher's softened outputs and the labels: hf-resnet distill --teacher TEACHER "
        "[train's flags]",
    )
