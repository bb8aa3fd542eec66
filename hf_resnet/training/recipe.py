"""`finetune()` and argument parsing: the command line and Python build the same dataclasses."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from transformers import HfArgumentParser

from ..data import embedded
from ..data.arguments import DataArguments
from ..model.arguments import ModelArguments
from ..training.arguments import ResNetTrainingArguments
from ..training.run import FinetuneResult, run

logger = logging.getLogger(__name__)

ARGUMENT_CLASSES = (ModelArguments, DataArguments, ResNetTrainingArguments)


def _uses_embedded(given: set[str]) -> bool:
    return not given.intersection(embedded.DATA_OR_MODEL_ARGS)


def _announce_embedded() -> None:
    logger.warning(
        "No model or data given: running the embedded default, %s.\n%s",
        embedded.DESCRIPTION,
        embedded.HOW_TO_USE_YOUR_OWN,
    )


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ResNetTrainingArguments]:
    """Parse command-line flags, or a single `.yaml`/`.json` config file, into the three dataclasses.

    With no data or model argument, the embedded default's flags are put first, so any flag
    given still wins (`recipes/finetune.py --num_train_epochs 1` is a quick embedded run).

    >>> model_args, data_args, training_args = parse_args(["--train_dir", "photos", "--arch", "resnet-18"])
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        path = Path(argv[0]).resolve()
        if path.suffix == ".json":
            return parser.parse_json_file(str(path), allow_extra_keys=False)
        return parser.parse_yaml_file(str(path), allow_extra_keys=False)
    given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}
    if _uses_embedded(given):
        _announce_embedded()
        defaults = [item for key, value in embedded.embedded_defaults().items() for item in (f"--{key}", str(value))]
        argv = defaults + argv
    return parser.parse_args_into_dataclasses(args=argv)


def finetune(dataset=None, config=None, callbacks=None, **kwargs) -> FinetuneResult:
    """Fine-tune a ResNet; keyword arguments are the recipe's flags (see `recipes/finetune.py --help`).

    `dataset` may be a `datasets.Dataset` or `DatasetDict` with an image and a label column;
    `config` a `transformers.ResNetConfig` to train from scratch with that exact layout;
    `callbacks` extra `transformers.TrainerCallback`s.

    >>> result = hf_resnet.finetune(model_name_or_path="microsoft/resnet-50", dataset_name="beans",
    ...                             output_dir="outputs/beans")  # doctest: +SKIP
    >>> result.metrics["eval_accuracy"]  # doctest: +SKIP
    0.97
    """
    fields = {cls: {f.name for f in dataclasses.fields(cls) if f.init} for cls in ARGUMENT_CLASSES}
    unknown = set(kwargs) - set().union(*fields.values())
    if unknown:
        raise TypeError(f"finetune() got unknown argument(s) {sorted(unknown)}; see recipes/finetune.py --help")
    if dataset is None and config is None and _uses_embedded(set(kwargs)):
        _announce_embedded()
        kwargs = {**embedded.embedded_defaults(), **kwargs}
    model_args, data_args, training_args = (
        cls(**{key: value for key, value in kwargs.items() if key in fields[cls]}) for cls in ARGUMENT_CLASSES
    )
    return run(model_args, data_args, training_args, dataset=dataset, config=config, callbacks=callbacks)
