"""What the rest of hf_resnet needs to know about a flag, declared once, in the field that defines it.

A field built with `flag(...)` carries a `Flag` in its metadata: whether it changes what a run
computes, whether a resumed run may change it, its allowed values and range, and where the model
card shows it. The resume fingerprint, recipe.json's training flags, the card's augmentation rows,
the choices in `--help` and every range or choice refusal are derived from these declarations, so
adding a flag is one field (plus the code that uses it and its test); no list of names is kept by hand.

Inherited `TrainingArguments` fields are declared in the subclass's `inherited_flags` mapping,
which says the same things about fields whose definition belongs to transformers.

Every flag hf_resnet defines names its `section`, the heading it is listed under in `--help` and in the
docs' flag reference; the inherited flags without one are listed by `--help-all` only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: The metadata key a `Flag` is stored under; `HfArgumentParser` passes metadata to argparse, which must not see it.
FLAG_KEY = "hf_resnet"

#: The sections of `--help`, in order: a flag's `section` is one of these keys; the value is its heading.
SECTIONS = {
    "model": "Model: what to start from",
    "data": "Data: where the images come from",
    "recipe": "Recipe: rates, schedule, freezing, balance",
    "augmentation": "Augmentation",
    "evaluation": "Evaluation and calibration",
    "output": "Output and Hub",
    "speed": "Speed",
    "example": "Accepted from the transformers example (nothing to set here)",
}
#: Sections `--help` leaves to `--help-all`: flags kept so that other tools' command lines run unchanged.
HELP_ALL_ONLY = ("example",)

_BOUNDS = re.compile(r"^\s*([\[(])\s*(-?[\d.e+-]+|-inf)\s*,\s*(-?[\d.e+-]+|inf)\s*([\])])\s*$")


@dataclass(frozen=True)
class Bounds:
    """An interval a numeric flag must lie in, written as in mathematics: `[0, 1)`, `(0, inf)`."""

    low: float
    high: float
    closed_low: bool = True
    closed_high: bool = True

    @classmethod
    def parse(cls, text: str) -> Bounds:
        """Read `[0, 1)`-style text.

        >>> Bounds.parse("(0, 1]")
        Bounds(low=0.0, high=1.0, closed_low=False, closed_high=True)
        """
        match = _BOUNDS.match(text)
        if not match:
            raise ValueError(f"bounds {text!r}: write an interval such as [0, 1) or (0, inf)")
        left, low, high, right = match.groups()
        return cls(float(low), float(high), left == "[", right == "]")

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = value >= self.low if self.closed_low else value > self.low
        below = value <= self.high if self.closed_high else value < self.high
        return above and below

    def describe(self) -> str:
        """The refusal's wording: `must be > 0`, `must be >= 1`, `must be in [0, 1)`.

        >>> Bounds.parse("[1, inf)").describe(), Bounds.parse("(0, 1]").describe()
        ('must be >= 1', 'must be in (0, 1]')
        """
        if math.isinf(self.high):
            return f"must be {'>=' if self.closed_low else '>'} {self.low:g}"
        left, right = "[" if self.closed_low else "(", "]" if self.closed_high else ")"
        return f"must be in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Flag:
    """What one argument means to the rest of hf_resnet (see the module docstring)."""

    #: It changes what the run computes: recorded in the resume fingerprint (run_args.json).
    result: bool = False
    #: With `result`: a resumed run may change it (how long it runs, how it is judged), so it is not fingerprinted.
    resumable: bool = False
    #: With `result`: it describes the machine (precision, process layout), so recipe.json leaves it to whoever reruns.
    machine: bool = False
    #: The values it may take; None: any of its type.
    choices: tuple | None = None
    #: The interval a number must lie in, e.g. "(0, 1]"; None: unchecked. `None` values are always allowed.
    bounds: str | None = None
    #: What the refusal adds after the range, e.g. "(0 turns it off)".
    hint: str = ""
    #: The refusal's whole wording in place of the range's, where the range alone would not tell a user enough.
    allowed: str | None = None
    #: The model card's recipe section lists it under this heading (e.g. "augmentation").
    card: str | None = None
    #: The `--help` section it is listed under (a key of SECTIONS); None: `--help-all` only.
    section: str | None = None

    def __post_init__(self):
        if self.section is not None and self.section not in SECTIONS:
            raise ValueError(f"section {self.section!r}: choose one of {', '.join(SECTIONS)}")

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed (the `allowed` part of the one-line error), or None."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"choose one of {', '.join(map(str, self.choices))}"
        interval = Bounds.parse(self.bounds) if self.bounds is not None else None
        if interval is not None and value not in interval:
            return self.allowed or interval.describe() + (f" {self.hint}" if self.hint else "")
        return None


def flag(default: Any = dataclasses.MISSING, help: str = "", **declaration: Any) -> Any:
    """A dataclass field whose metadata holds its `help` for the parser and its `Flag` declaration.

    The help names the choices, so `--help` and the refusal list the same values.
    """
    spec = Flag(**{key: value for key, value in declaration.items() if key != "aliases"})
    if spec.choices is not None and "choose" not in help and "one of" not in help:
        help = f"{help} Choices: {', '.join(map(str, spec.choices))}."
    metadata = {"help": help, FLAG_KEY: spec}
    if "aliases" in declaration:
        metadata["aliases"] = declaration["aliases"]
    return field(default=default, metadata=metadata)


def section_of(item: dataclasses.Field, cls: type) -> str | None:
    """The `--help` section of a field of `cls`: its own declaration's, or the class's `inherited_flags`' one."""
    spec = item.metadata.get(FLAG_KEY) or getattr(cls, "inherited_flags", {}).get(item.name)
    return spec.section if spec is not None else None


def declarations(cls: type) -> dict[str, Flag]:
    """Every declared flag of an argument dataclass (or instance), its inherited ones included, by name."""
    found = dict(getattr(cls, "inherited_flags", {}))
    for item in dataclasses.fields(cls):
        if FLAG_KEY in item.metadata:
            found[item.name] = item.metadata[FLAG_KEY]
    return found


def named(cls: type, **wanted: Any) -> tuple[str, ...]:
    """The names of the declared flags whose declaration has every attribute given, in field order.

    >>> from hf_resnet.data.arguments import DataArguments
    >>> named(DataArguments, card="augmentation")[:3]
    ('resize', 'crop_scale_min', 'hflip')
    """
    order = [item.name for item in dataclasses.fields(cls)]
    found = declarations(cls)
    names = sorted(found, key=lambda name: order.index(name) if name in order else len(order))
    return tuple(name for name in names if all(getattr(found[name], key) == value for key, value in wanted.items()))


def fingerprint_names(cls: type) -> tuple[str, ...]:
    """What a resumed run must share with the run its checkpoint came from."""
    return named(cls, result=True, resumable=False)


def recipe_names(cls: type) -> tuple[str, ...]:
    """What recipe.json records and `--recipe` replays: what the model learns from, not the machine it ran on."""
    return named(cls, result=True, machine=False)


def problems(arguments: Any) -> Iterator[tuple[str, Any, str]]:
    """`(flag, value, allowed)` for each declared flag of `arguments` whose value is not allowed."""
    for name, spec in declarations(type(arguments)).items():
        value = getattr(arguments, name)
        value = getattr(value, "value", value)  # transformers' str enums, as the flag was given
        if (allowed := spec.problem(value)) is not None:
            yield name, value, allowed
