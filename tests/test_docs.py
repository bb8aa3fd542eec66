"""The documentation: the site builds with --strict, the README stays short, and what the docs show is real.

The flag reference, the commands' help and the Python API are generated from the code when the site
builds (docs/hooks.py); every command line the docs show is parsed here by the command's own parser,
so a renamed or removed flag fails this test instead of a reader.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_PYTHONPATH

from hf_resnet.config.parsing import build_parser, parse_args

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
_BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def command_lines(path: Path) -> list[list[str]]:
    """Each command of the file's bash blocks, continuation lines joined, as its words (comments dropped)."""
    commands = []
    for block in _BASH_BLOCK.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value before the command
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def hf_resnet_command(words: list[str]) -> list[str] | None:
    """`[COMMAND, flags...]` of an `hf-resnet` or `accelerate launch` (script or -m hf_resnet) line, else None."""
    if words[0] == "hf-resnet":
        return words[1:]
    if words[:2] == ["accelerate", "launch"]:
        if "recipes/finetune.py" in words:
            return ["train", *words[words.index("recipes/finetune.py") + 1 :]]
        if "hf_resnet" in words:
            return words[words.index("hf_resnet") + 1 :]
    return None


def check(command: list[str], scratch: Path) -> None:
    """Parse `hf-resnet COMMAND flags` with the command's own parser; an unknown flag or bad value raises.

    A config file the docs' reader writes first (`my-run.yaml`, a search's `best.yaml`) stands in as one flag;
    timm's and torchvision's data folder, with its train and val folders, stands in for theirs.
    """
    from hf_resnet.cli import build_parser as command_parser
    from hf_resnet.config.parsing import shipped_configs
    from hf_resnet.tuning.cli import lr_find_parser, search_parser

    name, argv = command[0], command[1:]
    for index, word in enumerate(argv):
        if word.endswith((".yaml", ".json")) and word not in shipped_configs() and not (ROOT / word).exists():
            (scratch / Path(word).name).write_text("train_dir: photos/train\n")
            argv[index] = str(scratch / Path(word).name)
    for index, word in enumerate(argv[:-1]):  # timm's and torchvision's data folder is read as the flags are mapped
        if word in ("--data-dir", "--data-path", "--data_dir"):
            for split in ("train", "val"):
                (scratch / argv[index + 1] / split).mkdir(parents=True, exist_ok=True)
            argv[index + 1] = str(scratch / argv[index + 1])
    if {"-h", "--help", "--help-all"} & set(argv) or "--recipe" in argv:  # help; a recipe is read from the Hub
        return
    if name in ("train", "distill", "lr-find", "search"):
        if name != "train":
            _, argv = (lr_find_parser() if name == "lr-find" else search_parser()).parse_known_args(argv)
        parse_args(argv)
    else:
        command_parser().parse_args(command)


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_command_line_the_docs_show_parses(path, tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    for words in command_lines(path):
        if (command := hf_resnet_command(words)) is not None:
            check(command, tmp_path)
        elif words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.M), words
        elif scripts := [word for word in words if word.endswith(".py")]:  # a benchmark script: it is there
            assert words[0] in ("python", "accelerate") and (ROOT / scripts[0]).is_file(), words
        else:
            assert words[0] in ("pip", "mkdocs"), f"{path}: a command no test checks: {shlex.join(words)}"


def test_the_readme_is_short_and_keeps_the_two_command_quick_start():
    text = README.read_text()
    assert len(text.encode()) <= 15_000
    quick_start = text.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    assert [words[:2] for words in command_lines_of(quick_start)] == [["make", "demo"], ["make", "test"]]


def command_lines_of(markdown: str) -> list[list[str]]:
    return [shlex.split(line, comments=True) for block in _BASH_BLOCK.findall(markdown) for line in block.splitlines()]


def test_the_site_builds_strict_with_a_flag_reference_of_every_flag(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": TEST_PYTHONPATH,
            "NO_MKDOCS_2_WARNING": "1",
            "HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    reference = (site / "reference" / "flags" / "index.html").read_text()
    options = {option for action in build_parser()._actions for option in action.option_strings}
    listed = set(re.findall(r"<code>(--[\w]+)</code>", reference))
    assert {option for option in options if option.startswith("--") and "-" not in option[2:]} - listed == {"--help"}
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Fine-tune a ResNet; keyword arguments are the recipe" in api  # finetune's docstring, rendered
    commands = (site / "reference" / "commands" / "index.html").read_text()
    assert "usage: hf-resnet evaluate" in commands and "usage: hf-resnet classify" in commands
