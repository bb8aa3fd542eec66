"""MkDocs hooks: the pages that are generated from the code, so they cannot disagree with it.

A page holding one of the markers below gets it replaced at build time:
- `<!-- flags -->`: every flag of `hf-resnet train`, by section, from the flag declarations;
- `<!-- commands -->`: each command's `--help`, as the installed command prints it;
- `<!-- api -->`: the public Python API (`hf_resnet.__all__`), from its docstrings, by mkdocstrings.
"""

from __future__ import annotations

import contextlib
import io

COMMANDS = (
    "train",
    "distill",
    "lr-find",
    "search",
    "evaluate",
    "classify",
    "explain",
    "export",
    "deploy-report",
    "push",
    "demo",
)


def flags() -> str:
    from hf_resnet.config.help import reference_markdown
    from hf_resnet.config.parsing import ARGUMENT_CLASSES

    return reference_markdown(ARGUMENT_CLASSES)


def command_help(command: str) -> str:
    from hf_resnet.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
        main([command, "--help"]) if command else main(["--help"])
    return printed.getvalue()


def commands() -> str:
    sections = [f"```text\n{command_help('')}```\n"]
    for command in COMMANDS:
        if command == "train":
            text = (
                "`hf-resnet train --help` lists the flags by section; every one is in the [flag reference](flags.md)."
            )
        elif command == "distill":
            text = (
                "`hf-resnet train` with `--teacher` required (its flags are train's); see "
                "[distil a big model into a small one](../how-to/distill.md)."
            )
        else:
            text = f"```text\n{command_help(command)}```"
        sections.append(f"## hf-resnet {command}\n\n{text}\n")
    return "\n".join(sections)


def api() -> str:
    import hf_resnet

    return "\n".join(
        f"## `hf_resnet.{name}`\n\n::: hf_resnet.{hf_resnet._EXPORTS[name]}.{name}\n"
        for name in sorted(hf_resnet.__all__, key=str.lower)
        if name in hf_resnet._EXPORTS
    )


MARKERS = {"<!-- flags -->": flags, "<!-- commands -->": commands, "<!-- api -->": api}


def on_page_markdown(markdown: str, **kwargs) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
