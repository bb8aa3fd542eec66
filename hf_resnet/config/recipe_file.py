"""recipe.json: what a run records so that anyone can rerun it, and reading one back as flags.

It is pushed with the model, so it names nothing that only exists on the machine that trained:
local data paths are relative to a data root (`--data_root` when rerunning: the folder that held
them, or their common parent), a local base model is left out (listed under `not_recorded`, the
rerun names its own), and machine settings (workers, precision, folders, Hub credentials) are not
training flags that change what the model learns (declared with each flag: `hf_resnet.flags.recipe_names`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..data.arguments import DataArguments
from ..flags import recipe_names
from ..model.arguments import ModelArguments
from .arguments import ResNetTrainingArguments
from .example_flags import recorded
from .run_folder import RECIPE_FILE

#: Data flags that hold local paths, recorded relative to the data root.
DATA_PATH_FLAGS = ("train_dir", "validation_dir", "dataset_name")


def _plain(value):
    return getattr(value, "value", value)  # enums (IntervalStrategy.EPOCH) as their flag values


def _local(path: str | None) -> bool:
    return bool(path) and os.path.exists(path)


def data_root(data_args: DataArguments) -> str | None:
    """The folder local data paths are recorded relative to: `--data_root`, else their common parent."""
    if data_args.data_root:
        return os.path.abspath(data_args.data_root)
    paths = [os.path.abspath(getattr(data_args, flag)) for flag in DATA_PATH_FLAGS if _local(getattr(data_args, flag))]
    if not paths:
        return None
    common = os.path.commonpath(paths)
    return os.path.dirname(common) if common in paths else common


def portable_arguments(
    model_args: ModelArguments, data_args: DataArguments, training_args: ResNetTrainingArguments
) -> dict:
    """The run's flags as a recipe records them: `model`, `data`, `training`, plus what was left out and why."""
    root = data_root(data_args)
    data = dataclasses.asdict(data_args) | {"data_root": None}
    for flag in DATA_PATH_FLAGS:
        if _local(data[flag]):
            data[flag] = Path(os.path.relpath(os.path.abspath(data[flag]), root)).as_posix()
    model = {f.name: getattr(model_args, f.name) for f in dataclasses.fields(model_args) if recorded(f.name)}
    model["cache_dir"] = None
    not_recorded = []
    for flag in ("model_name_or_path", "image_processor_name", "teacher"):
        if _local(model[flag]):
            model[flag] = None
            not_recorded.append(flag)
    training = {flag: _plain(getattr(training_args, flag)) for flag in recipe_names(type(training_args))}
    return {
        "model": model,
        "data": data,
        "training": training,
        "paths": {
            "relative_to": "data_root" if root else None,
            "not_recorded": not_recorded,
        },
    }


def portable_description(description: str, data_args: DataArguments) -> str:
    """The data's name for people: a Hub id, or a folder under the data root's name (`photos/train`, not `train`).

    The root's own name is kept because the folder names alone ("train", "val") say nothing about the data.
    """
    root = data_root(data_args)
    if root and os.path.isabs(description):
        return Path(os.path.basename(root), os.path.relpath(description, root)).as_posix()
    return description


def model_reference(source: str) -> str:
    """A model for people and records, never naming this machine's folders: a Hub id as given, a folder by its name."""
    return f"local checkpoint {Path(source).resolve().name}" if _local(source) else source


def base_model_name(model_args: ModelArguments) -> str:
    """How the weights started, for people and never naming this machine's folders.

    A Hub id as given; a local checkpoint by its folder's name; "from scratch" only when no checkpoint was loaded.
    """
    source = model_args.model_name_or_path
    if source:
        return model_reference(source)
    layout = f"{model_args.arch} {model_args.variant}" if model_args.arch else "custom"
    return f"from scratch ({layout} layout)"


def load_recipe(name_or_path: str) -> dict:
    """A recipe.json: a file, a run folder holding one, or a Hub model repo that published one."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / RECIPE_FILE).is_file():
            raise ValueError(
                f"--recipe {name_or_path}: the folder has no {RECIPE_FILE} (a finished or stopped hf_resnet run "
                f"writes one); pass a run folder that has it, or the file itself"
            )
        path = path / RECIPE_FILE
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(name_or_path, RECIPE_FILE))
        except Exception as error:  # not a repo id, no such repo, no recipe in it, offline: one line says which
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"--recipe {name_or_path}: no such file or folder, and no {RECIPE_FILE} from a Hub repo of that "
                f"name ({reason})"
            ) from None
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--recipe {name_or_path}: {path.name} is not JSON ({error})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("training"), dict):
        raise ValueError(f"--recipe {name_or_path}: {path.name} has no `training` flags (written by hf_resnet?)")
    return recipe


def recipe_values(recipe: dict, name_or_path: str, given: set[str]) -> dict:
    """The recipe's flags, `{flag: value}`; a flag it could not record must be among `given`."""
    missing = [flag for flag in recipe.get("paths", {}).get("not_recorded", []) if flag not in given]
    if missing:
        flags = " ".join(f"--{flag} PATH" for flag in missing)
        raise ValueError(
            f"--recipe {name_or_path}: {', '.join(missing)} was a local path on the machine that trained it "
            f"(not recorded); give yours: {flags}"
        )
    return {key: value for section in ("model", "data", "training") for key, value in recipe.get(section, {}).items()}
