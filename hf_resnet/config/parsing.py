"""From a command line, a config file or a published recipe to the three argument dataclasses.

`hf-resnet train`, `recipes/finetune.py` and `finetune()` all build the same three dataclasses;
this module turns flags, YAML/JSON configs and recipe.json files into them, and renders `--help`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import re
import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from ..data import embedded
from ..data.arguments import DataArguments
from ..flags import FLAG_KEY
from ..model.arguments import ModelArguments
from .arguments import ResNetTrainingArguments
from .example_flags import announce, canonical_names, flag_aliases
from .foreign_flags import Context, flag_table_text, translate

logger = logging.getLogger(__name__)

ARGUMENT_CLASSES = (ModelArguments, DataArguments, ResNetTrainingArguments)
#: The worked configs shipped inside the package, run by name: `hf-resnet train --config beans`.
CONFIG_DIR = Path(__file__).with_name("configs")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def uses_embedded(given: set[str]) -> bool:
    return not given.intersection(embedded.DATA_OR_MODEL_ARGS)


def announce_embedded() -> None:
    logger.warning(
        "No model or data given: running the embedded default, %s.\n%s",
        embedded.DESCRIPTION,
        embedded.HOW_TO_USE_YOUR_OWN,
    )


def shipped_configs() -> list[str]:
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str) -> Path:
    """A config file's path: the path given, or the shipped config of that name (`beans`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if path.suffix not in CONFIG_SUFFIXES and shipped.is_file():
        return shipped
    raise ValueError(
        f"config {name_or_path!r}: no such file, and no shipped config of that name "
        f"(shipped: {', '.join(shipped_configs())})"
    )


def _field_names() -> set[str]:
    """Every flag name a config or the command line may use: the fields' and their aliases."""
    fields = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    return fields | set(flag_aliases(ARGUMENT_CLASSES))


def _unique_json_keys(path: Path):
    def mapping(pairs: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in pairs]
        if twice := next((key for key in keys if keys.count(key) > 1), None):
            raise ValueError(f"{path}: the key {twice!r} is given twice; keep one (JSON would keep the last silently)")
        return dict(pairs)

    return mapping


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(
                    f"{self.name} line {key_node.start_mark.line + 1}: the key {key!r} is given twice; keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def config_flags(path: Path) -> list[str]:
    """A config file's `key: value` pairs as the flags `--key value`; unknown and repeated keys are named."""
    with path.open(encoding="utf-8") as file:  # YAML's errors name the file by the stream's name
        if path.suffix == ".json":
            values = json.load(file, object_pairs_hook=_unique_json_keys(path))
        else:
            values = yaml.load(file, Loader=_UniqueKeyLoader)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected `flag: value` lines (a mapping), found {type(values).__name__}")
    return mapping_flags(values, str(path))


def mapping_flags(values: dict, source: str) -> list[str]:
    """`{flag: value}` as `--flag value` arguments (None: not given); `source` names the origin in errors."""
    known = _field_names()
    for key in values:
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else "; `hf-resnet train --help` lists the flags"
            raise ValueError(f"{source}: unknown key {key!r}{hint}")
    flags = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return flags


def _take(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """(value of `flag` or None if absent, argv without it); `--flag value` and `--flag=value` both count."""
    for index, arg in enumerate(argv):
        if arg == flag or arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[index + 1] if index + 1 < len(argv) else "")
            return value, argv[:index] + argv[index + (1 if "=" in arg else 2) :]
    return None, argv


def recipe_flags(name_or_path: str, argv: list[str]) -> list[str]:
    """A published recipe's flags (recipe.json, a run folder or a Hub model id); `argv`'s flags are checked."""
    from .recipe_file import load_recipe, recipe_values

    given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}
    values = recipe_values(load_recipe(name_or_path), name_or_path, given)
    return mapping_flags(values, f"--recipe {name_or_path}")


def expand_config(argv: list[str]) -> list[str]:
    """Replace a recipe (`--recipe`) and a config (a leading `X.yaml`, or `--config NAME_OR_PATH`) by their flags.

    They are put first, the recipe's before the config's, so a config overrides a recipe and the
    command line overrides both.
    """
    recipe, argv = _take(list(argv), "--recipe")
    if recipe == "":
        raise ValueError("--recipe: give a recipe.json, a run folder or the Hub id of a model trained by hf_resnet")
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        front, argv = config_flags(config_path(argv[0])), argv[1:]
    else:
        config, argv = _take(argv, "--config")
        if config == "":
            raise ValueError(
                "--config: give a config file or the name of a shipped one: " + ", ".join(shipped_configs())
            )
        front = config_flags(config_path(config)) if config is not None else []
    if recipe is not None:
        front = recipe_flags(recipe, front + argv) + front
    return front + argv


def _raise(message: str):
    raise ValueError(message)


#: What `hf-resnet train` takes, the first line of its help.
USAGE = "hf-resnet train [CONFIG.yaml | --config NAME] [--recipe RECIPE] [--flag value ...]"


def description() -> str:
    return (
        "Fine-tune a ResNet image classifier. CONFIG (a YAML/JSON file of `flag: value` lines, or a shipped one: "
        f"{', '.join(shipped_configs())}) gives flags the command line overrides; --recipe reruns a published "
        "recipe.json, run folder or Hub model. No model or data flag: the embedded default (offline digits)."
    )


class FlagParser(HfArgumentParser):
    """`HfArgumentParser` over fields that may carry a `Flag` declaration (hf_resnet/flags.py).

    HfArgumentParser hands a field's metadata to argparse as keyword arguments; the declaration
    is hf_resnet's own, so it is taken out on the way (argparse's public `add_argument`). Its help
    is the sectioned one of config/help.py.
    """

    def add_argument(self, *args, **kwargs):
        declared = kwargs.pop(FLAG_KEY, None)
        # What the command line is checked against before torch loads (config/foreign_flags.py): names, number
        # types and declared ranges and choices.
        spec = {"field": args[0].lstrip("-"), "type": getattr(kwargs.get("type"), "__name__", None)}
        checked = dataclasses.asdict(declared) if declared is not None else {}
        spec |= {key: checked[key] for key in ("choices", "bounds", "hint", "allowed") if checked.get(key)}
        self.flag_table = {**getattr(self, "flag_table", {}), **dict.fromkeys(args, spec)}
        return super().add_argument(*args, **kwargs)

    def format_help(self) -> str:
        return render_help()


def build_parser(prog: str = "hf-resnet train") -> HfArgumentParser:
    parser = FlagParser(
        ARGUMENT_CLASSES,
        allow_abbrev=False,  # `--lr` must not silently become `--lr_scheduler_type`: a flag is given in full
        prog=prog,
        usage=USAGE,
        description=description(),
    )
    parser.error = _raise  # a bad value is reported once, by main, as one line (argparse prints usage and exits)
    return parser


def render_help(everything: bool = False) -> str:
    """`hf-resnet train --help` (`everything`: `--help-all`), as printed from its shipped copy."""
    from .help import render

    # HfArgumentParser narrows the fields' types as it builds (`Union[None, str, list[str]]` becomes `str`, one
    # value): built first, the help names what the parser takes, whatever ran before in the process.
    build_parser()
    return render(ARGUMENT_CLASSES, USAGE, description(), everything)


def render_help_all() -> str:
    return render_help(everything=True)


#: A negative number as a flag's value: argparse takes `-1e-5` (unlike `-0.5`) for an option of its own.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)


def _negative_values_joined(argv: list[str]) -> list[str]:
    """`--flag -1e-5` as `--flag=-1e-5`, which argparse reads as the flag's value.

    >>> _negative_values_joined(["--backbone_learning_rate", "-1e-5", "--seed", "3"])
    ['--backbone_learning_rate=-1e-5', '--seed', '3']
    """
    joined, index = [], 0
    while index < len(argv):
        arg = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else ""
        if arg.startswith("--") and "=" not in arg and _NEGATIVE_NUMBER.match(following):
            joined.append(f"{arg}={following}")
            index += 2
        else:
            joined.append(arg)
            index += 1
    return joined


def render_flags() -> str:
    """Every option string of the parser and what its value may be: the shipped copy checked before torch loads."""
    return flag_table_text(build_parser().flag_table)


def _amp_flags() -> list[str]:
    """`--amp` (timm, torchvision): autocast in bf16, or fp16 on a GPU without bf16."""
    import torch

    fp16 = torch.cuda.is_available() and not torch.cuda.is_bf16_supported()
    return ["--fp16", "True"] if fp16 else ["--bf16", "True"]


def _translate_foreign(argv: list[str]) -> list[str]:
    """timm's and torchvision's flags as ours (config/foreign_flags.py), said in one line."""
    epochs = ResNetTrainingArguments.__dataclass_fields__["num_train_epochs"].default
    argv, mapped = translate(argv, Context(list(argv), default_epochs=epochs, amp=_amp_flags))
    aliases = flag_aliases(ARGUMENT_CLASSES)
    renamed = [f"{name} -> --{aliases[name.lstrip('-')]}" for name in dict.fromkeys(argv) if _is_alias(name, aliases)]
    if mapped or renamed:
        logger.warning("Flags of other scripts, as hf_resnet's: %s", "; ".join(mapped + renamed))
    return argv


def _is_alias(arg: str, aliases: dict[str, str]) -> bool:
    return arg.startswith("-") and arg.partition("=")[0].lstrip("-") in aliases


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ResNetTrainingArguments]:
    """Parse command-line flags, with an optional config file, into the three dataclasses.

    With no data or model argument, the embedded default's flags are put first, so any flag
    given still wins (`hf-resnet train --num_train_epochs 1` is a quick embedded run).

    >>> model_args, data_args, training_args = parse_args(["--train_dir", "photos", "--arch", "resnet-18"])
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--help-all" in argv:
        sys.stdout.write(render_help_all())
        raise SystemExit(0)
    argv = _translate_foreign(_negative_values_joined(expand_config(argv)))
    given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("-")}
    if uses_embedded(given) and not {"-h", "--help"} & set(argv):
        announce_embedded()
        defaults = [item for key, value in embedded.embedded_defaults().items() for item in (f"--{key}", str(value))]
        argv = defaults + argv
    *parsed, unknown = build_parser().parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        flag = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
        guess = difflib.get_close_matches(flag.lstrip("-").split("=")[0], _field_names(), n=1)
        hint = f"; did you mean --{guess[0]}?" if guess else "; `hf-resnet train --help` lists the flags"
        raise ValueError(f"unrecognized argument(s) {' '.join(unknown)}{hint}")
    announce(canonical_names(given, ARGUMENT_CLASSES), parsed[2].hub_token, parsed[0].model_type)
    return tuple(parsed)
