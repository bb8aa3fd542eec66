"""Arguments checked before any work: one clear line, exit code 2 on the command line, nothing left on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config.checks import ArgumentError, check_labels, validate
from hf_resnet.training import run as run_module
from hf_resnet.training.run_folder import RUN_ARGS_FILE, checkpoint_problem

FAST = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, report_to="none", disable_tqdm=True)


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    """A tiny checkpoint and image folder, and the arguments of a run that would work."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")
    train = make_image_folder(tmp_path / "train", per_class=4)
    return dict(model_name_or_path=str(checkpoint), train_dir=str(train), output_dir=str(tmp_path / "out"), **FAST)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the run reads data or builds a model: the checks must refuse before either."""

    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were refused")

    for name in ("load_image_data", "load_stream", "build_model"):
        monkeypatch.setattr(run_module, name, work)


def _files(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# (overrides of the working arguments, the message's start). Every bad input of issue 11 and the checks beside them.
BAD_VALUES = [
    (dict(learning_rate=-1), r"--learning_rate -1: must be > 0"),
    (dict(backbone_learning_rate=0.0), r"--backbone_learning_rate 0\.0: must be > 0"),
    (dict(per_device_train_batch_size=0), r"--per_device_train_batch_size 0: must be >= 1"),
    (dict(per_device_eval_batch_size=0), r"--per_device_eval_batch_size 0: must be >= 1"),
    (dict(gradient_accumulation_steps=0), r"--gradient_accumulation_steps 0: must be >= 1"),
    (dict(num_train_epochs=0), r"--num_train_epochs 0: must be > 0 \(or give --max_steps > 0\)"),
    (dict(mixup_alpha=-1), r"--mixup_alpha -1: must be >= 0"),
    (dict(cutmix_alpha=-0.5), r"--cutmix_alpha -0\.5: must be >= 0"),
    (dict(crop_scale_min=5.0), r"--crop_scale_min 5\.0: must be in \(0, 1\]"),
    (dict(crop_scale_min=0.0), r"--crop_scale_min 0\.0: must be in \(0, 1\]"),
    (dict(hflip=1.5), r"--hflip 1\.5: must be in \[0, 1\]"),
    (dict(random_erasing=-0.1), r"--random_erasing -0\.1: must be in \[0, 1\]"),
    (dict(validation_split=1.0), r"--validation_split 1\.0: must be in \(0, 1\)"),
    (dict(label_smoothing_factor=1.0), r"--label_smoothing_factor 1\.0: must be in \[0, 1\)"),
    (dict(image_size=0), r"--image_size 0: must be a positive number of pixels"),
    (dict(max_train_samples=0), r"--max_train_samples 0: must be >= 1"),
    (dict(unfreeze_every=0), r"--unfreeze_every 0: must be >= 1"),
    (dict(weight_decay=-1e-4), r"--weight_decay -0\.0001: must be >= 0"),
    (dict(model_name_or_path=None, arch="resnet-7"), r"--arch resnet-7: choose one of resnet-18, .*resnet-152"),
    (dict(variant="v2"), r"--variant v2: choose one of v1, v1\.5"),
    (dict(auto_augment="autoaug"), r"--auto_augment autoaug: choose one of none, trivial, rand"),
    (dict(lr_scaling="cubic"), r"--lr_scaling cubic: choose one of none, linear, sqrt"),
    (dict(augment_on="tpu"), r"--augment_on tpu: choose one of auto, workers, device"),
    (dict(ema_decay=1.0), r"--ema_decay 1\.0: must be in \(0, 1\)"),
    (dict(ema_decay=0.0), r"--ema_decay 0\.0: must be in \(0, 1\)"),
    (dict(tta="sideways"), r"--tta sideways: choose one of none, flip, crops, flip\+crops"),
    (dict(freeze="stage5"), r"--freeze stage5: a comma list of embedder, stage1, .*stage4, or none"),
    (dict(arch="resnet-18"), r"--arch resnet-18: pass either --model_name_or_path \(.*\) or --arch"),
    (dict(model_name_or_path=None), r"--model_name_or_path not given: no model"),
    (dict(dataset_name="beans"), r"--dataset_name beans: pass it or --train_dir \(.*\), not both"),
    (dict(train_dir=None), r"--train_dir not given: no data"),
    (dict(max_steps=-1, streaming=True, train_dir=None, dataset_name="beans"), r"--max_steps -1: --streaming needs"),
    (dict(streaming=True, max_steps=5), r"--streaming True: reads a Hub dataset"),
    (dict(cache_frozen_features=True, freeze="none"), r"--cache_frozen_features True: needs the backbone frozen"),
    (dict(train_dir="nowhere"), r"--train_dir nowhere: no such directory"),
    (dict(validation_dir="nowhere"), r"--validation_dir nowhere: no such directory"),
    (dict(model_name_or_path="./no/such/model"), r"--model_name_or_path \./no/such/model: no such folder"),
    (dict(resume_from_checkpoint="no/checkpoint-4"), r"--resume_from_checkpoint no/checkpoint-4: no such folder"),
    (dict(resume_from_checkpoint="last"), r"--resume_from_checkpoint last: no checkpoint-\* folder in .*out"),
    (dict(gpu_decode=True), r"--gpu_decode True: needs a CUDA device; training runs on cpu"),
    (dict(overwrite_output_dir=True, resume_from_checkpoint="last"), r"--overwrite_output_dir True: and --resume"),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[pattern[:40] for _, pattern in BAD_VALUES])
def test_a_bad_argument_is_one_line_naming_it_before_any_work(setup, no_work, tmp_path, overrides, message):
    before = _files(tmp_path)
    with pytest.raises(ArgumentError, match="^" + message) as error:
        hf_resnet.finetune(**{**setup, **overrides})
    assert isinstance(error.value, ValueError)
    assert "\n" not in str(error.value)
    assert _files(tmp_path) == before  # no output folder, nothing else


def test_a_model_folder_that_cannot_load_is_named_with_what_is_missing(setup, no_work, tmp_path):
    empty, no_config, truncated = tmp_path / "empty", tmp_path / "no_config", tmp_path / "truncated"
    empty.mkdir()
    save_tiny_checkpoint(no_config)
    (no_config / "config.json").unlink()
    save_tiny_checkpoint(truncated)
    _truncate(truncated / "model.safetensors")
    cases = {
        empty: "the folder is empty",
        no_config: "no config.json in it",
        truncated: r"model\.safetensors is truncated or corrupt",
    }
    for folder, problem in cases.items():
        with pytest.raises(ArgumentError, match=rf"^--model_name_or_path {folder}: {problem}"):
            hf_resnet.finetune(**{**setup, "model_name_or_path": str(folder)})
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_cannot_be_written_is_refused(setup, no_work, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ArgumentError, match=r"--output_dir .*a_file/out: not writable \(its nearest existing parent"):
        hf_resnet.finetune(**{**setup, "output_dir": str(blocker / "out")})
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere; let the check see what any other user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    with pytest.raises(ArgumentError, match=r"--output_dir .*read_only/run: not writable"):
        hf_resnet.finetune(**{**setup, "output_dir": str(read_only / "run")})
    assert list(read_only.iterdir()) == []


def test_sync_bn_with_several_cpu_processes_is_refused(setup):
    model_args, data_args, training_args = hf_resnet.parse_args(
        ["--model_name_or_path", setup["model_name_or_path"], "--train_dir", setup["train_dir"], "--sync_bn", "true"]
        + ["--output_dir", setup["output_dir"]]
    )
    two_processes = type(training_args)  # world_size is read from the distributed state: pretend there are two
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(two_processes, "world_size", property(lambda self: 2))
        with pytest.raises(
            ArgumentError,
            match=r"^--sync_bn True: torch's SyncBatchNorm cannot run on CPU processes \(2 here\); drop --sync_bn",
        ):
            validate(model_args, data_args, training_args)


# ----------------------------------------------------------------------------- the command line


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_resnet", "train", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )


CLI_CASES = [
    (["--learning_rate", "-1"], "--learning_rate -1.0: must be > 0"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be >= 1"),
    (["--num_train_epochs", "0"], "--num_train_epochs 0.0: must be > 0 (or give --max_steps > 0)"),
    (["--resume_from_checkpoint", "gone/checkpoint-9"], "--resume_from_checkpoint gone/checkpoint-9: no such folder"),
    (["--learning_rate", "fast"], "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
    (["--lerning_rate", "0.1"], "unrecognized argument(s) --lerning_rate 0.1; did you mean --learning_rate?"),
    (["--train_dir", "images"], "--train_dir images: no class sub-folders (2 images lie directly in it)."),
    (["typo.yaml"], "typo.yaml: unknown key 'num_train_epoch'; did you mean 'num_train_epochs'?"),
    (["broken.yaml"], "while parsing"),
]


#: The case also run as a user meets it, in a process of its own; the others run in this one (capfd still sees every
#: byte written to the process's stdout and stderr), which spares a torch import per case.
OWN_PROCESS_CASE = ["--train_dir", "images"]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=[" ".join(args) for args, _ in CLI_CASES])
def test_the_train_command_prints_one_error_line_and_exits_2(tmp_path, args, message, monkeypatch, capfd):
    make_image_folder(tmp_path / "train", per_class=2)
    make_image_folder(tmp_path / "images", per_class=2, classes=("a",))
    for image in (tmp_path / "images" / "a").iterdir():
        image.rename(tmp_path / "images" / image.name)  # images without class folders: a DataError
    (tmp_path / "images" / "a").rmdir()
    (tmp_path / "typo.yaml").write_text("arch: resnet-18\nnum_train_epoch: 3\n")
    (tmp_path / "broken.yaml").write_text("arch: [resnet-18\n")
    before = _files(tmp_path)
    common = ["--arch", "resnet-18", "--train_dir", "train", "--output_dir", "out"]
    argv = args if args[0].endswith(".yaml") else [*common, *args]
    if args == OWN_PROCESS_CASE:
        result = _train(argv, tmp_path)
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        monkeypatch.chdir(tmp_path)
        capfd.readouterr()
        code = cli(["train", *argv])
        stdout, stderr = capfd.readouterr()
    assert code == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hf-resnet train: error: ") and message in lines[0]
    assert "Traceback" not in stdout + stderr
    assert _files(tmp_path) == before


def test_under_accelerate_launch_q_the_error_line_is_all_the_user_sees(tmp_path):
    make_image_folder(tmp_path / "train", per_class=2)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1", "--num_machines", "1"]
    result = subprocess.run(
        [*launch, "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hf_resnet", "train"]
        + ["--arch", "resnet-18", "--train_dir", "train", "--output_dir", "out", "--learning_rate", "-1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1  # accelerate's code for any failed script
    assert result.stderr.strip() == "hf-resnet train: error: --learning_rate -1.0: must be > 0"
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- reused folders and resuming


def _run_args(setup, tmp_path, **extra) -> dict:
    validation = tmp_path / "val"
    if not validation.is_dir():
        make_image_folder(validation, per_class=2, seed=3)
    return {**setup, "validation_dir": str(validation), "save_strategy": "steps", "save_steps": 1, **extra}


def test_a_folder_holding_a_run_is_refused_and_left_unchanged(setup, tmp_path):
    first = hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=2))
    out = first.output_dir
    assert (out / RUN_ARGS_FILE).is_file()
    before = _files(out)

    with pytest.raises(ArgumentError) as refused:
        hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=4, learning_rate=1e-2))
    message = str(refused.value)
    assert message.startswith(f"--output_dir {out}: holds a previous run (model.safetensors, ")
    for way in ("a new --output_dir", "--resume_from_checkpoint last", "--overwrite_output_dir"):
        assert way in message
    result = _train(["--arch", "resnet-18", "--train_dir", setup["train_dir"], "--output_dir", str(out)], tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("hf-resnet train: error: --output_dir ")
    assert _files(out) == before

    replaced = hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=1, overwrite_output_dir=True))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]  # none of the first run's left
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
    assert replaced.output_dir == out


def test_resuming_another_recipe_says_what_differs(setup, tmp_path):
    hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=2))
    out = Path(setup["output_dir"])
    before = _files(out)
    with pytest.raises(ArgumentError, match=r"belongs to another recipe \(learning_rate 0\.001 there, 0\.01 here\)"):
        hf_resnet.finetune(
            **_run_args(setup, tmp_path, max_steps=4, learning_rate=1e-2, resume_from_checkpoint="last")
        )
    with pytest.raises(ArgumentError, match=r"^--max_steps 2: checkpoint-2 is already at step 2: nothing left"):
        hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=2, resume_from_checkpoint="last"))
    with pytest.raises(ArgumentError, match=r"trained on the classes \['circle', 'hbar', 'vbar'\], but this run's"):
        check_labels(str(out / "checkpoint-2"), ["ant", "bee", "cow"])  # after the data is listed, before training
    other_labels = make_image_folder(tmp_path / "other", per_class=4, classes=("ant", "bee", "cow"))
    elsewhere = {**setup, "train_dir": str(other_labels), "output_dir": str(tmp_path / "elsewhere")}
    with pytest.raises(ArgumentError, match=r"belongs to another recipe \(train_dir .*"):
        hf_resnet.finetune(
            **_run_args(elsewhere, tmp_path, max_steps=4, resume_from_checkpoint=str(out / "checkpoint-2"))
        )
    assert _files(out) == before


def test_resume_last_skips_a_truncated_newest_checkpoint(setup, tmp_path, caplog):
    hf_resnet.finetune(**_run_args(setup, tmp_path, max_steps=3, save_total_limit=10))
    out = Path(setup["output_dir"])
    _truncate(out / "checkpoint-3" / "model.safetensors")
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        result = hf_resnet.finetune(
            **_run_args(setup, tmp_path, max_steps=5, save_total_limit=10, resume_from_checkpoint="last")
        )
    skipped = [record.getMessage() for record in caplog.records if "Not resuming from" in record.getMessage()]
    assert len(skipped) == 2
    assert f"{out / 'checkpoint-3'}: model.safetensors is truncated or corrupt" in skipped[0]
    assert f"{out / 'checkpoint-2'}: no trainer_state.json;" in skipped[1]
    state = json.loads((result.output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    # Trained on from checkpoint-1: steps 2 and 3 ran again, and their checkpoints are whole now.
    assert checkpoint_problem(out / "checkpoint-2") is None and checkpoint_problem(out / "checkpoint-3") is None
    assert "eval_accuracy" in result.metrics
