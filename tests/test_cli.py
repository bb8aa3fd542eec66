"""The installed product: `hf-resnet` and `python -m hf_resnet` as a user runs them, and what they import."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OUTPUT_FILES, ROOT, TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint

from hf_resnet.config.parsing import (
    ARGUMENT_CLASSES,
    CONFIG_DIR,
    build_parser,
    parse_args,
    render_help,
    render_help_all,
)
from hf_resnet.training.cli import help_text

#: What `classify` must never pay for: the training stack. (transformers' own `from_pretrained` imports
#: accelerate and scipy, so those are not ours to avoid.)
TRAINING_STACK = ("transformers.trainer", "datasets", "sklearn", "matplotlib", "hf_resnet.training.run")


def python(code_or_args: list[str], cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def imported_after(statement: str) -> set[str]:
    """The top-level and dotted module names a fresh interpreter holds after running `statement`."""
    code = f"import json, sys\n{statement}\nprint('MODULES', json.dumps(sorted(sys.modules)))"
    result = python(["-c", code])
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.rsplit("MODULES ", 1)[1]))


def test_help_and_import_load_no_torch():
    for statement in (
        "import hf_resnet",
        "from hf_resnet.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass",
        "from hf_resnet.cli import main\nmain(['train', '--help'])",
        "from hf_resnet.cli import main\nmain(['train', '--help-all'])",
        "from hf_resnet.cli import main\ntry: main(['cache', '--help'])\nexcept SystemExit: pass",
        "from hf_resnet.cli import main\nmain(['cache', 'list'])",
    ):
        modules = imported_after(statement)
        assert "torch" not in modules and "transformers" not in modules, statement


def test_classify_does_not_load_the_training_stack(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    image = next((make_image_folder(tmp_path / "photos", per_class=1) / "circle").iterdir())
    modules = imported_after(f"import hf_resnet\nhf_resnet.classify({str(image)!r}, model={str(checkpoint)!r})")
    assert "torch" in modules  # it did classify
    assert not [name for name in TRAINING_STACK if name in modules]


def test_train_help_is_the_live_parsers_help():
    """The shipped copies (printed without importing torch) must say what the parser accepts; `make help-text`."""
    assert help_text() == render_help()
    assert help_text(everything=True) == render_help_all()
    for flag in ("--train_dir", "--freeze", "--backbone_learning_rate", "--per_device_train_batch_size"):
        assert flag in help_text()


def test_train_help_lists_hf_resnets_flags_by_section_in_150_lines_and_help_all_every_flag():
    from transformers import TrainingArguments

    from hf_resnet.flags import HELP_ALL_ONLY, SECTIONS, section_of

    text = help_text()
    assert len(text.splitlines()) <= 150
    entries = text.split("\n  --")[1:]
    assert all(len(entry.rstrip("\n").split("\n\n")[0].splitlines()) <= 3 for entry in entries)
    shown_sections = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert shown_sections == [title for key, title in SECTIONS.items() if key not in HELP_ALL_ONLY]
    inherited = {item.name for item in dataclasses.fields(TrainingArguments)}
    for cls in ARGUMENT_CLASSES:  # every flag hf_resnet adds is in a section, listed under it
        for item in dataclasses.fields(cls):
            if item.init and item.name not in inherited:
                section = section_of(item, cls)
                assert section is not None, item.name
                assert (f"  --{item.name} " in text or f"  --{item.name}," in text) == (section not in HELP_ALL_ONLY)
    assert "--learning_rate FLOAT  Learning rate of the classifier head." in text
    assert "--adam_beta1" not in text and "--ddp_timeout" not in text  # the Trainer's own: --help-all
    everything = help_text(everything=True)
    listed = {"--" + name[2:].replace("-", "_") for name in re.findall(r"--[\w-]+", everything)}  # --batch-size too
    accepted = [option for action in build_parser()._actions for option in action.option_strings]
    spelled = {"--" + option[2:].replace("-", "_") for option in accepted if option.startswith("--")}
    assert sorted(spelled - listed) == ["--help"]  # --train-dir is --train_dir, as the help says
    assert "0.5% more accurate" in everything and "%%" not in everything


def test_python_dash_m_and_the_console_script_print_the_same_train_help():
    by_module = python(["-m", "hf_resnet", "train", "--help"], cwd=ROOT.parent)
    assert by_module.returncode == 0 and by_module.stdout == help_text()
    every_flag = python(["-m", "hf_resnet", "train", "--help-all"], cwd=ROOT.parent)
    assert every_flag.returncode == 0 and every_flag.stdout == help_text(everything=True)
    listing = python(["-m", "hf_resnet", "--help"])
    for command in ("train", "classify", "explain", "export", "push", "demo"):
        assert command in listing.stdout


def test_a_shipped_config_runs_by_name_and_flags_override_it():
    model_args, data_args, training_args = parse_args(["--config", "beans", "--num_train_epochs", "1"])
    assert model_args.model_name_or_path == "microsoft/resnet-50" and data_args.dataset_name == "beans"
    assert training_args.num_train_epochs == 1 and training_args.backbone_learning_rate == pytest.approx(1e-4)
    by_path = parse_args([str(CONFIG_DIR / "beans.yaml"), "--seed", "7"])
    assert by_path[2].seed == 7 and by_path[0].freeze == "embedder,stage1"


def test_a_typo_in_a_config_names_the_key_and_the_likely_flag(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("train_dir: photos\nlerning_rate: 0.01\n")
    with pytest.raises(ValueError, match=r"mine\.yaml: unknown key 'lerning_rate'; did you mean 'learning_rate'\?"):
        parse_args([str(config)])
    with pytest.raises(ValueError, match=r"config 'nosuch': no such file, and no shipped config .*beans"):
        parse_args(["--config", "nosuch"])


def test_an_installed_wheel_trains_from_outside_the_repo(installed_wheel, tmp_path):
    """`pip install` of the wheel alone gives `hf-resnet train`: configs and help inside, no repo needed."""
    site = installed_wheel
    work = tmp_path / "elsewhere"
    work.mkdir()
    save_tiny_checkpoint(work / "ckpt")
    make_image_folder(work / "photos", per_class=6)
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    where = python(["-c", "import hf_resnet; print(hf_resnet.__file__)"], cwd=work, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    assert python(["-m", "hf_resnet", "train", "--help"], cwd=work, env=env).stdout == help_text()
    shipped = site / "hf_resnet" / "config" / "accelerate"  # the accelerate configs the README names
    assert (shipped / "multi-gpu.yaml").read_text() == (ROOT / "recipes" / "accelerate" / "multi-gpu.yaml").read_text()
    assert (shipped / "multi-node.yaml").is_file()
    assert (
        "beans"
        in python(
            ["-c", "from hf_resnet.config.parsing import shipped_configs as s; print(s())"], cwd=work, env=env
        ).stdout
    )
    flags = ["--model_name_or_path", "ckpt", "--train_dir", "photos", "--output_dir", "out", "--num_train_epochs", "1"]
    trained = python([str(site / "bin" / "hf-resnet"), "train", *flags], cwd=work, env=env)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    for name in OUTPUT_FILES:
        assert (work / "out" / name).is_file(), name
    assert json.loads((work / "out" / "eval_results.json").read_text())["eval_samples"] > 0
