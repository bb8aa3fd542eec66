"""`hf-resnet lr-find` and `hf-resnet search`: each takes its own few flags plus every `hf-resnet train` flag.

Their own flags are parsed here with argparse, torch-free, so `--help` answers at once; what is
left over is the run's, parsed by the recipe's parser when the work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

LR_FIND_HELP = "learning-rate range test: suggests --learning_rate and --backbone_learning_rate for a run"
RUN_FLAGS = "Every other flag is the run's, as for hf-resnet train (hf-resnet train --help lists them)."


def _parser(command: str, usage: str, description: str) -> argparse.ArgumentParser:
    prog = f"hf-resnet {command}"
    # Flags in full, as `hf-resnet train` takes them: `--num_step` must not quietly mean `--num_steps`.
    return argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} {usage} [train flags ...]",
        description=f"{description} {RUN_FLAGS}",
        allow_abbrev=False,
    )


def lr_find_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "lr-find",
        "[--num_steps N] [--start_lr LR] [--end_lr LR] [--suggest RULE] [--plot PNG]",
        "Run the learning-rate range test on a run's own data, transforms, freezing and per-part "
        "learning-rate groups, from a copy of its weights: the rates grow exponentially each step and the loss is "
        "recorded until it diverges. A first sweep moves every part together (the head's rate) and a second the "
        "backbone's with the head held (from a checkpoint). Nothing trained is kept; --output_dir is not written. "
        "The loss is smoothed as fastai does (forward moving average, beta 0.98) and cut where it diverges; "
        "--suggest reads the curve with one of fastai's rules. A curve whose drop does not clear the noise of its "
        "flat start has no clear valley: the run's rates are kept and printed. Prints the rates, the rule and the "
        "hf-resnet train command that uses them.",
    )
    parser.add_argument("--num_steps", type=int, default=100, help="optimizer steps per sweep (default 100)")
    parser.add_argument("--start_lr", type=float, default=1e-7, help="rate of the first step (default 1e-7)")
    parser.add_argument("--end_lr", type=float, default=10.0, help="rate of the last step (default 10)")
    parser.add_argument(
        "--suggest",
        default="auto",
        choices=("auto", "valley", "minimum", "steep"),
        help="fastai's rules: valley, halfway along the longest descent; minimum, a tenth of the lowest point's "
        "rate; steep, where the loss falls fastest. auto (default): valley for a constant schedule, minimum for "
        "an annealing one (the rate is its peak)",
    )
    parser.add_argument(
        "--plot", default="lr_find.png", help="loss-versus-rate plot; the curves go beside it as .json"
    )
    return parser


def _lr_find_problem(own: argparse.Namespace) -> str | None:
    """What is wrong with lr-find's own flags, as the one line the user sees, or None."""
    if own.num_steps < 2:
        return f"--num_steps {own.num_steps}: must be >= 2"
    if not 0 < own.start_lr < own.end_lr:
        return f"--start_lr {own.start_lr:g} --end_lr {own.end_lr:g}: need 0 < start < end"
    if Path(own.plot).is_dir():
        return f"--plot {own.plot}: is a folder; pass the plot's file name, e.g. {Path(own.plot) / 'lr_find.png'}"
    return None


def _unknown_flags(parser: argparse.ArgumentParser, rest: list[str]) -> str | None:
    """The one line refusing a flag that is neither this command's nor the run's, before torch loads."""
    from ..config.foreign_flags import known_flags, translate, unknown_flags_problem

    own = {option for action in parser._actions for option in action.option_strings}
    return unknown_flags_problem(translate(list(rest))[0], known_flags() | own)


def _command(make_parser, problem, module: str):
    """A pass-through command: its own flags parsed here (`--help` without torch), the rest given to `module.main`."""

    def run(argv: list[str]) -> int:
        parser = make_parser()
        if any(arg in ("-h", "--help") for arg in argv):
            sys.stdout.write(parser.format_help())
            return 0
        own, rest = parser.parse_known_args(argv)
        if message := problem(own) or _unknown_flags(parser, rest):
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
            return 2  # argparse's code for a usage error, as hf-resnet train
        return importlib.import_module(module, __package__).main(rest, own)

    return run


SEARCH_HELP = "hyperparameter search (Optuna) over rates, freezing, unfreezing, augmentation and label smoothing"


def search_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "search",
        "[--n_trials N] [--timeout S] --output_dir SEARCH_DIR",
        'Search the recipe\'s hyperparameters with Optuna (pip install "hf_resnet[search]"): the head '
        "rate (log, a decade either side of the run's), the backbone rate (a share of the head's, at most 1), the "
        "freeze depth (0-4 parts), the unfreeze epoch (off, 1, 2: only before the last epoch and with something "
        "frozen), the augmentation strength (0..1: smaller crops up to 0.5, the single-label default; then "
        "random erasing, and TrivialAugment from 0.75) and label smoothing (0..0.2); from scratch, the head rate, "
        "augmentation and smoothing only. Each trial is a whole run scored on --metric_for_best_model; the first is "
        "the run as given (these flags and the defaults); poor trials are pruned at an evaluation (median rule). "
        "--output_dir (required) holds study.db (SQLite: the same command resumes a stopped search), trials.csv, "
        "trials.png and best.yaml, which hf-resnet train --config reruns, and the running trial's folder, "
        "trials/trial-N, removed when it ends. Ctrl-C marks the running trial failed and stops the search.",
    )
    parser.add_argument("--n_trials", type=int, default=20, help="trials in the study, those already run included")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    return parser


def _search_problem(own: argparse.Namespace) -> str | None:
    if own.n_trials < 1:
        return f"--n_trials {own.n_trials}: must be >= 1"
    if own.timeout is not None and not own.timeout > 0:
        return f"--timeout {own.timeout:g}: must be a number of seconds > 0"
    return None


#: Commands whose flags go to their own parser untouched (see hf_resnet/cli.py).
PASSTHROUGH = {
    "lr-find": _command(lr_find_parser, _lr_find_problem, ".lr_find"),
    "search": _command(search_parser, _search_problem, ".search"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("lr-find", add_help=False, help=LR_FIND_HELP)
    subparsers.add_parser("search", add_help=False, help=SEARCH_HELP)
