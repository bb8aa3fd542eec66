"""The recipe: flags (or a config) in, a fine-tuned model folder out.

`hf-resnet train`, `recipes/finetune.py` and `finetune()` all build the same three dataclasses
(config/parsing.py) and call the same `run`; `main` is the command line's body and `finetune` the Python one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import torch
import yaml
from accelerate import PartialState

from ..config.checks import ArgumentError, named_as_given, validate
from ..config.example_flags import announce
from ..config.parsing import ARGUMENT_CLASSES, announce_embedded, parse_args, uses_embedded
from ..data import embedded
from ..data.cache_store import CacheError
from ..data.images import ImageError
from ..data.sources import DataError
from ..families.loading import ModelLoadError
from ..runtime.console import quiet_libraries
from ..runtime.signals import StopRequested, end_process, stop_at_once, stop_line, survive_closed_output

if TYPE_CHECKING:
    from .run import FinetuneResult

logger = logging.getLogger(__name__)

#: Errors the user fixes from the message alone: one line on stderr, exit code 2, no traceback.
USER_ERRORS = (ArgumentError, DataError, ImageError, ModelLoadError)
#: argparse's exit code for a usage error, which every one of USER_ERRORS is.
USAGE_ERROR = 2
#: Seconds a rank other than 0 waits before reporting a user error, so rank 0 reports one they share.
RANK_EXIT_DELAY_S = 5


def _one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def usage_error(error: BaseException, prog: str = "hf-resnet train") -> int:
    """Print `hf-resnet train: error: ...` once and return argparse's exit code.

    A bad argument or data folder stops every rank alike, and torch's elastic launcher stops the
    other ranks as soon as one exits; so rank 0 prints at once, and another rank prints only if it
    is still alive a moment later, which happens when the error was its own (a file that breaks
    mid-training on its shard) while rank 0 waits in a collective. A rank of a multi-process run exits
    without the interpreter's teardown, which takes seconds on busy cores: the launcher then stops
    the other ranks before their delay is up, and they stay silent.
    """
    if os.environ.get("RANK", "0") != "0":
        time.sleep(RANK_EXIT_DELAY_S)
    print(f"{prog}: error: {_one_line(error)}", file=sys.stderr, flush=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        PartialState().destroy_process_group()  # as main does after a run: no abort at interpreter exit
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        end_process(USAGE_ERROR)
    return USAGE_ERROR


def _disk_error(error: BaseException) -> int:
    print(f"hf-resnet train: error: {_one_line(error)}", file=sys.stderr, flush=True)
    return 1


def setup_logging() -> None:
    """The command line's log format, as the transformers examples': time, level, logger, message on stdout."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.INFO,
    )


def main(argv: list[str] | None = None, distill: bool = False) -> int:
    """The command line's run: parse, fine-tune, print where the results are; 130 after Ctrl-C/SIGTERM.

    A user error (a bad flag or value, unusable data or model) is one line on stderr and exit code 2.
    `distill`: `hf-resnet distill`, which is this run with `--teacher` required.
    """
    survive_closed_output()  # a launcher killed mid-run takes the read end of our stderr with it
    setup_logging()
    prog = "hf-resnet distill" if distill else "hf-resnet train"
    try:  # a config that does not parse, an unknown flag, a value of the wrong type, a refused combination
        model_args, data_args, training_args = parse_args(argv)
    except (ValueError, yaml.YAMLError, OSError) as error:
        return usage_error(error, prog)
    if distill and not model_args.teacher:
        return usage_error(NO_TEACHER, prog)
    quiet_libraries(verbose=training_args.verbose)  # before the checks, which may ask the Hub
    try:
        with stop_at_once():  # Ctrl-C/SIGTERM from here to training: one line, nothing left behind
            # Checked before the training stack is imported, so a bad flag is answered in the time torch takes to load.
            plan = validate(model_args, data_args, training_args)
            from .run import dry_run_report, run

            result = run(model_args, data_args, training_args, plan=plan)
    except USER_ERRORS as error:
        return usage_error(named_as_given(error, sys.argv[1:] if argv is None else argv, ARGUMENT_CLASSES), prog)
    except StopRequested as stop:
        print(stop_line(stop, "hf-resnet train"), file=sys.stderr, flush=True)
        return 130  # as a stop during training: the shell's code for Ctrl-C
    except CacheError as error:  # --image_cache disk that cannot be written: the setting (2) or the disk (1)
        return usage_error(error) if error.usage else _disk_error(error)
    except Exception as error:
        from ..hub.push import PushError
        from .checkpoints import disk_full_message, is_disk_full

        if is_disk_full(error, training_args.output_dir):
            message = disk_full_message(training_args.output_dir)  # not a usage error: the disk was wrong, not the run
        elif isinstance(error, PushError):
            message = _one_line(error)  # trained and saved, not pushed: not a usage error (2), not a success either
        else:
            raise
        print(f"hf-resnet train: error: {message}", file=sys.stderr, flush=True)
        PartialState().destroy_process_group()
        return 1
    # Every rank leaves the process group before exiting: tearing it down at interpreter exit instead can abort
    # ("terminate called without an active exception") on a rank that finishes first.
    PartialState().destroy_process_group()
    if result.interrupted_at is not None:
        end_process(130)  # the shell's code for "stopped by Ctrl-C"; the checkpoint is saved
    if training_args.dry_run:
        if training_args.should_log:
            print(dry_run_report(result))
        return 0
    if training_args.should_log:
        chosen = ["accuracy", *training_args.metrics.split(","), "loss"]
        shown = next(name for name in chosen if f"eval_{name}" in result.metrics)
        print(
            f"Held-out {shown}: {result.metrics[f'eval_{shown}']:.4f} on {int(result.metrics['eval_samples'])} "
            f"validation images ({', '.join(result.labels[:10])}{', ...' if len(result.labels) > 10 else ''}); "
            f"model, processor, card and results in {result.output_dir}/\n"
            f"Try it: hf-resnet classify IMAGE.png --model {result.output_dir}"
        )
    return 0


def finetune(dataset=None, config=None, callbacks=None, **kwargs) -> FinetuneResult:
    """Fine-tune a ResNet; keyword arguments are the recipe's flags (see `hf-resnet train --help`).

    `dataset` may be a `datasets.Dataset` or `DatasetDict` with an image and a label column;
    `config` a `transformers.ResNetConfig` to train from scratch with that exact layout;
    `callbacks` extra `transformers.TrainerCallback`s.
    """
    model_args, data_args, training_args = arguments_from(kwargs, dataset, config)
    from .run import run

    return run(model_args, data_args, training_args, dataset=dataset, config=config, callbacks=callbacks)


#: The refusal of a distillation without a teacher, from the command line and from `distill()`.
NO_TEACHER = ArgumentError(
    "teacher", None, "distillation needs a teacher: an hf_resnet run folder or the Hub id of a trained classifier"
)


def distill(teacher: str, dataset=None, config=None, callbacks=None, **kwargs) -> FinetuneResult:
    """Train a model on the labels and a `teacher`'s softened outputs (`hf-resnet distill`); as `finetune` otherwise.

    `teacher`: an hf_resnet run folder or Hub id of a classifier trained on the data's classes; `distill_alpha` and
    `distill_temperature` set how it is learnt from. The keyword arguments are `finetune`'s (the recipe's flags).
    """
    if not teacher:
        raise NO_TEACHER
    return finetune(dataset=dataset, config=config, callbacks=callbacks, teacher=teacher, **kwargs)


def arguments_from(kwargs: dict, dataset=None, config=None) -> tuple:
    """The three dataclasses from a Python call's keyword arguments (the flags' names), as `finetune` reads them."""
    fields = {cls: {f.name for f in dataclasses.fields(cls) if f.init} for cls in ARGUMENT_CLASSES}
    unknown = set(kwargs) - set().union(*fields.values())
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}; see hf-resnet train --help")
    if dataset is None and config is None and uses_embedded(set(kwargs)):
        announce_embedded()
        kwargs = {**embedded.embedded_defaults(), **kwargs}
    model_args, data_args, training_args = (
        cls(**{key: value for key, value in kwargs.items() if key in fields[cls]}) for cls in ARGUMENT_CLASSES
    )
    announce(set(kwargs), training_args.hub_token, model_args.model_type)
    return model_args, data_args, training_args
