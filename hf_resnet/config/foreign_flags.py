"""timm's train.py and torchvision's reference scripts' flags, so their users' command lines run here.

Most of their flags are other names for one of ours (`--epochs`, `--batch-size`/`-b`, `--lr`, `--wd`,
`--smoothing`, `--mixup`, `--reprob`, `--workers`/`-j`, `--drop-path`...): those are `aliases` in the
fields' metadata, as the transformers example's are, and argparse reads them directly. The flags below
need their value translated (`--sched cosineannealinglr`, `--aa rand-m9-mstd0.5`, `--data-dir DIR`,
`--model resnet50 --pretrained`, `--warmup-epochs 1`), so the command line is rewritten into our flags
before parsing; one log line lists every mapping, and a value with no equivalent here is refused in one
line. The translations live here, not in the fields' metadata, because `HfArgumentParser` hands every
metadata key to argparse; and this module imports neither torch nor the argument dataclasses, so the
command line is checked (and refused) before the training stack loads.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from ..families.resnet import ARCHITECTURES
from ..families.timm_resnet import timm_architectures, timm_default_tag, timm_publishes
from ..flags import Flag
from ..model.arguments import arch_problem

#: The option strings of `hf-resnet train` and their values' types, ranges and choices, shipped beside
#: train_help.txt; a test keeps it equal to the parser.
FLAGS_FILE = "train_flags.json"
#: Arguments the command line takes before the parser sees it (config/parsing.py `expand_config`).
FRONT_FLAGS = ("--config", "--recipe", "-h", "--help")
_NUMBER = re.compile(r"^-\d|^-\.\d|^-inf$")

#: timm's `--opt` / torchvision's `--opt` names, as the Trainer's `--optim` (and its `--optim_args`).
OPTIMIZERS = {
    "sgd": ("sgd", "momentum=0.9,nesterov=True", "SGD, momentum 0.9, Nesterov: timm's sgd"),
    "nesterov": ("sgd", "momentum=0.9,nesterov=True", "SGD, momentum 0.9, Nesterov"),
    "momentum": ("sgd", "momentum=0.9", "SGD, momentum 0.9"),
    "adamw": ("adamw_torch_fused", None, "torch's AdamW"),
    "rmsprop": ("rmsprop", None, "torch's RMSprop"),
}
#: torchvision's `--opt sgd` has no Nesterov term (timm's has); a line in torchvision's spellings means that one.
TORCHVISION_SGD = ("sgd", "momentum=0.9", "SGD, momentum 0.9: torchvision's sgd")
#: Spellings only torchvision's references use: a command line with one of them is a torchvision line.
TORCHVISION_ONLY = ("--lr-scheduler", "--data-path", "--label-smoothing", "--wd", "--lr-warmup-epochs", "--weights")
#: `--sched` (timm) and `--lr-scheduler` (torchvision) names, as `--lr_scheduler_type`.
SCHEDULES = {
    "cosine": "cosine",
    "cosineannealinglr": "cosine",
    "linear": "linear",
    "poly": "polynomial",
    "constant": "constant",
    "plateau": "reduce_lr_on_plateau",
}
#: `--aa` (timm) and `--auto-augment` (torchvision) policies, as `--auto_augment`; ours pass through.
AUTO_AUGMENTS = {"none": "none", "trivial": "trivial", "rand": "rand", "ta_wide": "trivial", "ra": "rand"}
#: timm's `--model-ema-decay` default, which `--model-ema` alone means.
TIMM_EMA_DECAY = 0.9998


class ForeignFlagError(ValueError):
    """A timm or torchvision flag, or value, with no equivalent here; the message is the one line that says so."""


@dataclass
class Context:
    """What a translation needs besides its own value: the rest of the command line, and choices made later."""

    argv: list[str]
    #: The run's epochs when the command line gives none (None: not known yet, before the dataclasses load).
    default_epochs: float | None = None
    #: `--amp` as our flags, by the machine (None: not decided yet).
    amp: Callable[[], list[str]] | None = None

    def last(self, *names: str) -> str | None:
        """The value of the last of `names` given on the command line."""
        found = None
        for index, arg in enumerate(self.argv):
            name, _, inline = arg.partition("=")
            if name in names:
                found = inline if inline else (self.argv[index + 1] if index + 1 < len(self.argv) else None)
        return found

    def given(self, name: str) -> bool:
        return any(arg == name or arg.startswith(f"{name}=") for arg in self.argv)


def _number(flag: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ForeignFlagError(f"{flag} {value}: expected a number") from None


def _model(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (name,) = values
    name = name.removeprefix("hf-hub:")  # timm's spelling of a Hub checkpoint
    weights = context.last("--weights")
    if weights and weights != "None":
        return [], "read with --weights"
    pretrained = context.given("--pretrained")
    if name in ARCHITECTURES:
        if pretrained:
            return [
                "--model_name_or_path",
                f"microsoft/{name}",
            ], f"--model_name_or_path microsoft/{name} (Hub weights)"
        return ["--arch", name], f"--arch {name} (from scratch: --pretrained loads microsoft/{name} from the Hub)"
    if name in timm_architectures():
        if pretrained:
            tag = timm_default_tag(name)
            if tag is None:
                raise ForeignFlagError(f"{flag} {name} --pretrained: timm publishes no weights for {name}")
            hub_id = f"timm/{name}.{tag}"
            return ["--model_name_or_path", hub_id], f"--model_name_or_path {hub_id} (timm's default weights, Hub)"
        return ["--arch", name], f"--arch {name} (timm's layout, from scratch: --pretrained loads timm's weights)"
    if os.path.isdir(os.path.expanduser(name)) or "/" in name:
        return ["--model_name_or_path", name], f"--model_name_or_path {name} (a checkpoint: its weights are loaded)"
    close = difflib.get_close_matches(name, [*ARCHITECTURES, *timm_architectures()], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ForeignFlagError(
        f"{flag} {name}: not a checkpoint folder, Hub id, transformers layout ({', '.join(ARCHITECTURES)}) or "
        f"architecture of timm's resnet module{hint}"
    )


#: torchvision's weight enums (`ResNet50_Weights.IMAGENET1K_V2`) as the tags timm publishes the same weights under.
TORCHVISION_WEIGHTS = {
    "IMAGENET1K_V1": ("tv_in1k",),
    "IMAGENET1K_V2": ("tv2_in1k",),
    "DEFAULT": ("tv2_in1k", "tv_in1k"),
}


def _weights(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    """torchvision's `--weights`: timm's copy of those weights on the Hub (`timm/resnet50.tv2_in1k`)."""
    (name,) = values
    if name == "None":
        return [], "none (from scratch)"
    match = re.fullmatch(r"(\w+?)_Weights\.(\w+)", name)
    architecture = match.group(1).lower() if match else None
    model = context.last("--model")
    if match is None or match.group(2) not in TORCHVISION_WEIGHTS or (model and model != architecture):
        raise ForeignFlagError(
            f"{flag} {name}: expected torchvision's weights of --model, such as ResNet50_Weights.IMAGENET1K_V2"
        )
    tag = next((tag for tag in TORCHVISION_WEIGHTS[match.group(2)] if timm_publishes(architecture, tag)), None)
    if tag is None:
        raise ForeignFlagError(f"{flag} {name}: timm publishes no copy of these weights; name a checkpoint instead")
    hub_id = f"timm/{architecture}.{tag}"
    return [
        "--model_name_or_path",
        hub_id,
    ], f"--model_name_or_path {hub_id} (these weights as timm publishes them, Hub)"


def _pretrained(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    if not context.given("--model"):
        raise ForeignFlagError("--pretrained: give --model (a layout name) beside it, or --model_name_or_path")
    return [], "read with --model"


def _num_classes(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    """The head is always sized for the data; a count that a class-folder tree contradicts is a mistake to name."""
    (count,) = values
    root = context.last("--data-dir", "--data-path")
    train = os.path.join(root, "train") if root else context.last("--train_dir", "--train-dir")
    folders = (
        sorted(entry.name for entry in os.scandir(train) if entry.is_dir()) if train and os.path.isdir(train) else []
    )
    if folders and str(len(folders)) != count:
        raise ForeignFlagError(
            f"{flag} {count}: {train} holds {len(folders)} classes ({', '.join(folders[:5])}"
            f"{', ...' if len(folders) > 5 else ''}); the head is sized for the data, so leave --num-classes out"
        )
    checked = f"{train} holds {count} classes" if folders else "the summary names the data's classes"
    return [], f"nothing: the head is sized for the data ({checked})"


def _optimizer(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (name,) = values
    if name.lower() not in OPTIMIZERS:
        raise ForeignFlagError(f"{flag} {name}: no equivalent here; choose one of {', '.join(OPTIMIZERS)}")
    torchvision = any(context.given(spelling) for spelling in TORCHVISION_ONLY)
    optim, optim_args, what = TORCHVISION_SGD if torchvision and name.lower() == "sgd" else OPTIMIZERS[name.lower()]
    flags = ["--optim", optim] + (["--optim_args", optim_args] if optim_args else [])
    return flags, " ".join(flags) + f" ({what})"


def _schedule(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (name,) = values
    if name.lower() not in SCHEDULES:
        raise ForeignFlagError(f"{flag} {name}: no equivalent here; choose one of {', '.join(SCHEDULES)}")
    return ["--lr_scheduler_type", SCHEDULES[name.lower()]], f"--lr_scheduler_type {SCHEDULES[name.lower()]}"


def _warmup(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (value,) = values
    warmup = _number(flag, value)
    given = context.last("--epochs", "--num_train_epochs", "--num-train-epochs")
    epochs = _number("--epochs", given) if given is not None else context.default_epochs
    if epochs is None:  # checked again once the default is known
        return ["--warmup_steps", "0"], "--warmup_steps (a fraction of the run)"
    if not 0 <= warmup < epochs:
        raise ForeignFlagError(f"{flag} {value}: must be >= 0 and fewer than the run's {epochs:g} epochs")
    fraction = f"{warmup / epochs:.6g}"
    return ["--warmup_steps", fraction], f"--warmup_steps {fraction} (the share of {epochs:g} epochs)"


def _auto_augment(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (policy,) = values
    if policy.startswith("rand-") or policy.startswith("rand_"):  # timm's RandAugment, e.g. rand-m9-mstd0.5
        note = "torchvision's RandAugment, 2 ops at magnitude 9, without timm's magnitude noise"
        return ["--auto_augment", "rand"], f"--auto_augment rand ({note})"
    if policy not in AUTO_AUGMENTS:
        raise ForeignFlagError(
            f"{flag} {policy}: no equivalent here (AutoAugment's fixed policies and AugMix are not built in); "
            "use rand-m9-mstd0.5 (RandAugment) or ta_wide (TrivialAugmentWide)"
        )
    return ["--auto_augment", AUTO_AUGMENTS[policy]], f"--auto_augment {AUTO_AUGMENTS[policy]}"


def _ema(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    decay = context.last("--model-ema-decay")
    if decay is not None:
        return [], "with --model-ema-decay"
    return ["--ema_decay", str(TIMM_EMA_DECAY)], f"--ema_decay {TIMM_EMA_DECAY} (timm's default decay)"


def _ema_decay(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    (decay,) = values
    _number(flag, decay)
    return ["--ema_decay", decay], f"--ema_decay {decay}"


def _amp(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    if context.amp is None:
        return [], "mixed precision"
    flags = context.amp()
    return flags, " ".join(flags) + " (autocast; bf16 unless the GPU lacks it)"


def _input_size(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    channels, height, width = values
    if channels != "3" or height != width:
        raise ForeignFlagError(f"{flag} {' '.join(values)}: only square RGB inputs here (3 N N), e.g. 3 224 224")
    return ["--image_size", height], f"--image_size {height}"


def _data_dir(flag: str, values: list[str], context: Context) -> tuple[list[str], str]:
    """timm's layout (DIR/train, DIR/validation or DIR/val) and torchvision's (DIR/train, DIR/val)."""
    (root,) = values
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise ForeignFlagError(f"{flag} {root}: no train folder in it (expected {train}/<class>/*.jpg)")
    flags = ["--train_dir", train]
    folders = (os.path.join(root, name) for name in ("validation", "val"))
    held_out = next((folder for folder in folders if os.path.isdir(folder)), None)
    if held_out is None:
        return flags, f"--train_dir {train} (no validation or val folder: a stratified share of train is held out)"
    return [*flags, "--validation_dir", held_out], f"--train_dir {train} --validation_dir {held_out}"


#: Flag spellings (timm's, torchvision's) whose value is translated: `(number of values, translation)`.
TRANSLATED: dict[str, tuple[int, Callable]] = {
    "--model": (1, _model),
    "--pretrained": (0, _pretrained),
    "--weights": (1, _weights),
    "--num-classes": (1, _num_classes),
    "--opt": (1, _optimizer),
    "--sched": (1, _schedule),
    "--lr-scheduler": (1, _schedule),
    "--warmup-epochs": (1, _warmup),
    "--lr-warmup-epochs": (1, _warmup),
    "--aa": (1, _auto_augment),
    "--auto-augment": (1, _auto_augment),
    "--model-ema": (0, _ema),
    "--model-ema-decay": (1, _ema_decay),
    "--amp": (0, _amp),
    "--input-size": (3, _input_size),
    "--data-dir": (1, _data_dir),
    "--data-path": (1, _data_dir),
}


def translate(argv: list[str], context: Context | None = None) -> tuple[list[str], list[str]]:
    """(argv in our flags, "--theirs value -> --ours value" for each translation); refuses what has no equivalent.

    >>> translate(["--sched", "cosineannealinglr", "--epochs", "4", "--warmup-epochs", "1"])[0]
    ['--lr_scheduler_type', 'cosine', '--epochs', '4', '--warmup_steps', '0.25']
    """
    context = context or Context(list(argv))
    out, mapped, index = [], [], 0
    while index < len(argv):
        arg = argv[index]
        name, equals, inline = arg.partition("=")
        if name not in TRANSLATED:
            out.append(arg)
            index += 1
            continue
        count, translation = TRANSLATED[name]
        values = [inline] if equals else argv[index + 1 : index + 1 + count]
        if len(values) != count or any(value.startswith("--") for value in values):
            raise ForeignFlagError(f"{name}: expected {count} value{'s' if count != 1 else ''}")
        flags, note = translation(name, values, context)
        out += flags
        mapped.append(f"{' '.join([name, *values])} -> {note}")
        index += 1 + (0 if equals else count)
    return out, mapped


def flag_table() -> dict[str, dict]:
    """`{option string: {"field", "type", and its Flag declaration}}` from the shipped copy (no torch import)."""
    text = resources.files("hf_resnet.config").joinpath(FLAGS_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def known_flags(table: dict[str, dict] | None = None) -> set[str]:
    """Every option string `hf-resnet train` accepts."""
    return set(flag_table() if table is None else table) | set(FRONT_FLAGS)


def value_problem(argv: list[str], table: dict[str, dict]) -> str | None:
    """The one line refusing a flag's value by its type and declared range or choices (as validate() words it),
    naming the flag as the command line gave it (an alias such as --lr or --train_val_split included)."""
    context = Context(argv)
    for name in dict.fromkeys(_flag_names(argv)):
        spec = table.get(name)
        text = context.last(name) if spec else None
        if text is None or text.startswith("--"):
            continue
        kind = {"int": int, "float": float}.get(spec.get("type"))
        try:
            value = kind(text) if kind else text
        except ValueError:
            return f"{name} {text}: expected {'an integer' if kind is int else 'a number'}"
        declared = {key: spec[key] for key in spec if key in Flag.__dataclass_fields__}
        if declared and (allowed := Flag(**declared).problem(value)) is not None:
            shown = value if isinstance(value, str) else repr(value)
            return f"{name} {shown}: {allowed}"
    return None


def _flag_names(argv: list[str]) -> list[str]:
    """The flags (not values) of a command line: its tokens starting with a dash that are not negative numbers."""
    return [arg.partition("=")[0] for arg in argv if arg.startswith("-") and not _NUMBER.match(arg)]


def unknown_flags_problem(argv: list[str], known: set[str]) -> str | None:
    """The one line refusing flags that are not ours after translation (abbreviations included), or None."""
    unknown = [name for name in dict.fromkeys(_flag_names(argv)) if name not in known]
    if not unknown:
        return None
    parts = []
    known_names = {flag[2:] for flag in known}  # transformers adds --a-b beside --a_b: name the field's own
    for name in unknown:
        longer = [flag for flag in known if flag.startswith(name) and flag.startswith("--")]
        longer = sorted(
            flag for flag in longer if "-" not in flag[2:] or flag.replace("-", "_")[2:] not in known_names
        )
        if longer and len(name) > 2:
            shown = ", ".join(longer[:6]) + (", ..." if len(longer) > 6 else "")
            parts.append(f"{name} (abbreviations are not accepted; in full: {shown})")
            continue
        guess = difflib.get_close_matches(name, sorted(known), n=1)
        parts.append(f"{name} (did you mean {guess[0]}?)" if guess else name)
    return f"no such flag here: {'; '.join(parts)}; `hf-resnet train --help` lists the flags"


def check_command_line(argv: list[str]) -> None:
    """Refuse, before torch is imported, a command line whose flags are not ours or have no equivalent here.

    A leading config file's name is skipped (its keys are checked when it is read).
    """
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = argv[1:]
    translated, _ = translate(list(argv))
    table = flag_table()
    problem = unknown_flags_problem(translated, known_flags(table)) or value_problem(translated, table)
    if problem:
        raise ForeignFlagError(problem)
    arch = Context(translated).last("--arch")
    if arch and (allowed := arch_problem(arch)):
        raise ForeignFlagError(f"--arch {arch}: {allowed}")


def flag_table_text(table: dict[str, dict]) -> str:
    """The shipped copy's text: the table as sorted JSON, lists for tuples, so it reads back as it was written."""
    return json.dumps(table, indent=1, sort_keys=True) + "\n"
