"""The transformers image-classification example's flags, so a user's existing command lines run unchanged.

`run_image_classification.py` names some flags differently (`--label_column_name`, `--train_val_split`,
`--model_revision`, the old `--evaluation_strategy`): those are `aliases` in the fields' metadata, which
`HfArgumentParser` turns into argparse option strings. Some mean nothing here (`--ignore_mismatched_sizes`:
the head is always sized for the data; `--do_train`: a run always trains): a run given any says so in one
line at start instead of accepting them silently. The few that cannot apply are refused by the argument
checks with the reason below. The reasons live here, not in the fields' metadata, because
`HfArgumentParser` hands every metadata key to argparse, which accepts only its own.
"""

from __future__ import annotations

import dataclasses
import logging
import os

logger = logging.getLogger(__name__)

#: The example's flags that are accepted and change nothing here, with the reason the start-up line gives.
NO_EFFECT = {
    "model_type": "every model here is a ResNet",
    "ignore_mismatched_sizes": "the head is always sized for the data's classes",
    "trust_remote_code": "ResNets load without Hub code",
    "remove_unused_columns": "images reach the model as pixel_values and labels only",
    "do_train": "every run trains",
    "do_eval": "every run evaluates its held-out split",
    "do_predict": "hf-resnet evaluate scores a test split",
}
#: The example's flags that cannot apply, refused when given (config/checks.py).
REFUSED = {
    "config_name": "the layout is --model_name_or_path's own config.json, or --arch from scratch; a separate config "
    "cannot apply",
}


def flag_aliases(classes) -> dict[str, str]:
    """`{alias: field name}` for every alias the fields declare, without leading dashes.

    >>> from hf_resnet.data.arguments import DataArguments
    >>> flag_aliases([DataArguments])["label_column_name"]
    'label_column'
    """
    aliases = {}
    for f in (f for cls in classes for f in dataclasses.fields(cls)):
        names = f.metadata.get("aliases", ())
        for alias in [names] if isinstance(names, str) else names:
            aliases[alias.lstrip("-")] = f.name
    return aliases


def canonical_names(names, classes) -> set[str]:
    """Flag names as given (aliases included) turned into the fields they set."""
    aliases = flag_aliases(classes)
    return {aliases.get(name, name) for name in names}


def recorded(name: str) -> bool:
    """Whether a recipe records this field: flags kept only for the example's command lines change no result."""
    return name not in NO_EFFECT and name not in REFUSED


def announce(given: set[str], hub_token: str | None = None, model_type: str | None = None) -> None:
    """Say in one line which given flags have no effect, and let the example's `--token` read from the Hub too.

    `given` holds field names (see `canonical_names`). The example passes its `--token` to every download;
    here it is `--hub_token`, which pushes, so it is also put where `huggingface_hub` reads a token from.
    A `--model_type` other than resnet is not announced: the argument checks refuse it.
    """
    if model_type not in (None, "resnet"):
        given = given - {"model_type"}
    ignored = [f"--{name} ({why})" for name, why in NO_EFFECT.items() if name in given]
    if ignored:
        logger.warning("Accepted with no effect here (transformers example flags): %s", "; ".join(ignored))
    if hub_token and not os.environ.get("HF_TOKEN"):
        os.environ["HF_TOKEN"] = hub_token
