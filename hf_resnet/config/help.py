"""`hf-resnet train --help` and `--help-all`, rendered from the flag declarations (hf_resnet/flags.py).

`--help` lists the flags hf_resnet declares a section for, by section, each in at most three lines:
its first sentence and its default. `--help-all` lists every flag the parser accepts with its whole
help, the inherited `TrainingArguments` ones last. Both are rendered at a fixed width and shipped
as text (config/train_help.txt, config/train_help_all.txt), so printing them needs no torch import.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Iterator

from ..flags import FLAG_KEY, HELP_ALL_ONLY, SECTIONS, Bounds, declarations, section_of

#: Columns of the rendered texts, so the shipped copies read the same on every terminal.
WIDTH = 100
#: The most lines one flag takes in `--help`.
MAX_ENTRY_LINES = 3
#: `--help-all`'s heading for the inherited flags hf_resnet gives no section.
TRAINER_SECTION = "Trainer flags (transformers' TrainingArguments; their documentation tells more)"
#: A sentence ends at a full stop and a space, except in "e.g. ", "i.e. " and "et al. ".
_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<! al\.)(?<=[.!?])\s+")
#: An aside in a sentence, which `--help` leaves to `--help-all` where dropping it saves a line.
_ASIDE = re.compile(r"\s*\([^()]*\)")
_TYPES = (("bool", ""), ("float", "FLOAT"), ("int", "INT"), ("dict", "JSON"), ("list", "VALUE ..."))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One flag as the help lists it."""

    name: str
    aliases: tuple[str, ...]
    metavar: str
    help: str
    default: object
    section: str | None

    def options(self, with_aliases: bool) -> str:
        names = [f"--{self.name}", *(self.aliases if with_aliases else ())]
        if self.metavar == "" and self.default is True:
            names.append(f"--no_{self.name}")
        return ", ".join(names) + (f" {self.metavar}" if self.metavar else "")

    def default_text(self) -> str:
        """`Default: X.` where the default says something (not None, not an unset switch), else ``."""
        value = getattr(self.default, "value", self.default)
        if value is None or value is dataclasses.MISSING or value is False or value == "":
            return ""
        return f"Default: {'on' if value is True else value}."


def _metavar(item: dataclasses.Field) -> str:
    spec = item.metadata.get(FLAG_KEY)
    if spec is not None and spec.choices is not None:
        listed = "{" + ",".join(map(str, spec.choices)) + "}"
        return listed if len(listed) <= 30 else "NAME"
    kind = str(item.type)  # `int | None`, `typing.Optional[int]`, `<class 'int'>`; not IntervalStrategy's "Int"
    return next((metavar for word, metavar in _TYPES if re.search(rf"\b{word}\b", kind)), "VALUE")


def entries(classes: tuple[type, ...]) -> Iterator[Entry]:
    """Every field the parser turns into a flag, in the order of `classes` and their fields."""
    for cls in classes:
        for item in dataclasses.fields(cls):
            if not item.init or item.name.startswith("_"):
                continue
            aliases = tuple(alias for alias in item.metadata.get("aliases", ()) if alias != f"--{item.name}")
            help_text = item.metadata.get("help", "").replace("%%", "%")
            default = item.default if item.default is not dataclasses.MISSING else None
            yield Entry(item.name, aliases, _metavar(item), help_text, default, section_of(item, cls))


def brief(entry: Entry) -> str:
    """The entry of `--help`: its first sentence (its asides in parentheses dropped where that saves a line), and
    its default where that takes no extra line."""
    first = _SENTENCE_END.split(" ".join(entry.help.split()))[0]
    options = entry.options(with_aliases=False)
    short = min((_wrap(options, text) for text in (first, _ASIDE.sub("", first))), key=lambda text: text.count("\n"))
    if "default" in entry.help.lower() or not (default := entry.default_text()):
        return short
    with_default = _wrap(options, f"{short.split('  ', 2)[-1]} {default}")
    return with_default if with_default.count("\n") == short.count("\n") else short


def whole(entry: Entry) -> str:
    """Its options, aliases included, and its whole help: the entry of `--help-all`."""
    text = " ".join(entry.help.split())
    if "default" not in entry.help.lower() and (default := entry.default_text()):
        text = f"{text} {default}".strip()
    return _wrap(entry.options(with_aliases=True), text)


def _wrap(options: str, text: str) -> str:
    return textwrap.fill(
        text, width=WIDTH, initial_indent=f"  {options}  ", subsequent_indent="      ", break_on_hyphens=False
    )


def render(classes: tuple[type, ...], usage: str, description: str, everything: bool) -> str:
    """The help text: usage, description, then the flags by section (`everything`: all of them, whole)."""
    items = list(entries(classes))
    shown = list(SECTIONS) if everything else [key for key in SECTIONS if key not in HELP_ALL_ONLY]
    write = whole if everything else brief
    lines = [f"usage: {usage}", "", textwrap.fill(description, WIDTH)]
    if everything:
        lines += ["", "Each flag may also be written with dashes: --train-dir is --train_dir."]
    else:
        lines += ["", "--help-all: every flag's whole help, and the Trainer's own flags."]
    for key in shown:
        chosen = [write(item) for item in items if item.section == key]
        if chosen:
            lines += ["", f"{SECTIONS[key]}:", *chosen]
    if everything:
        rest = [write(item) for item in items if item.section is None]
        lines += ["", f"{TRAINER_SECTION}:", *rest]
    return "\n".join(lines) + "\n"


def reference_markdown(classes: tuple[type, ...]) -> str:
    """The docs' flag reference: every flag by section, as Markdown tables (the docs build renders it, never typed).

    hf_resnet's sections first, then the Trainer's own flags; each row is the flag (aliases too), its
    default, and its whole help with its allowed values as the checks refuse them.
    """
    items = list(entries(classes))
    declared = {name: spec for cls in classes for name, spec in declarations(cls).items()}
    lines = []
    for key, title in [*SECTIONS.items(), (None, TRAINER_SECTION)]:
        chosen = [item for item in items if item.section == key]
        if not chosen:
            continue
        lines += [f"## {title}", "", "| flag | default | what it does |", "| --- | --- | --- |"]
        for item in chosen:
            names = ", ".join(f"`{option.split(' ')[0]}`" for option in item.options(True).split(", "))
            value = getattr(item.default, "value", item.default)
            default = "" if value is None else f"`{value}`"
            spec = declared.get(item.name)
            allowed = ""
            if spec is not None and spec.bounds is not None and spec.choices is None:
                allowed = f" Allowed: {spec.allowed or Bounds.parse(spec.bounds).describe()}."
            text = " ".join(item.help.split()).replace("|", "\\|") + allowed
            lines.append(f"| {names} | {default} | {text} |")
        lines.append("")
    return "\n".join(lines)
