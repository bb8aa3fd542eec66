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
from test_hub import TOKEN, hub  # noqa: F401  (the local Hub fixture)

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config.checks import ArgumentError, check_labels, validate
from hf_resnet.config.run_folder import RUN_ARGS_FILE, checkpoint_problem
from hf_resnet.training import run as run_module

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
    (
        dict(model_name_or_path=None, arch="resnet-7"),
        r"--arch resnet-7: choose a transformers layout \(resnet-18, .*resnet-152\) or an architecture of timm.s",
    ),
    (dict(variant="v2"), r"--variant v2: choose one of v1, v1\.5"),
    (
        dict(model_name_or_path=None, arch="resnet50d", variant="v1"),
        r"--variant v1: applies to the transformers layouts",
    ),
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
    (dict(max_steps=-5), r"--max_steps -5: must be >= -1 \(-1: train --num_train_epochs\)"),
    (dict(sync_bn=True), r"--sync_bn True: synchronises BatchNorm across processes, and this run has one; drop it"),
    (dict(report_to="tensorboard"), r"--report_to tensorboard: not installed: pip install tensorboard, or drop it"),
    (dict(report_to="tensorbord"), r"--report_to tensorbord: choose none, all or any of .*tensorboard"),
    (
        dict(train_dir=None, dataset_name="nobody/no-such-dataset"),
        r"--dataset_name nobody/no-such-dataset: HF_HUB_OFFLINE is set, and the dataset is not in the cache; "
        r"connect once to download it, or pass --train_dir",
    ),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[pattern[:40] for _, pattern in BAD_VALUES])
def test_a_bad_argument_is_one_line_naming_it_before_any_work(setup, no_work, tmp_path, overrides, message):
    before = _files(tmp_path)
    with pytest.raises(ArgumentError, match="^" + message) as error:
        hf_resnet.finetune(**{**setup, **overrides})
    assert isinstance(error.value, ValueError)
    assert "\n" not in str(error.value)
    assert _files(tmp_path) == before  # no output folder, nothing else


@pytest.mark.parametrize(
    "flag, inside, message",
    [("train_dir", "", "is"), ("train_dir", "circle/run", "lies inside"), ("validation_dir", "", "is")],
)
def test_an_output_dir_in_the_data_is_refused(setup, no_work, tmp_path, flag, inside, message):
    data = Path(setup["train_dir"]) if flag == "train_dir" else make_image_folder(tmp_path / "val", per_class=2)
    output_dir = data / inside if inside else data
    with pytest.raises(
        ArgumentError, match=rf"^--output_dir {output_dir}: {message} --{flag} {data}: the run's files"
    ):
        hf_resnet.finetune(**{**setup, flag: str(data), "output_dir": str(output_dir)})
    assert not (output_dir / "run_args.json").exists()


@pytest.mark.parametrize("network", ["bert", "convnext"])
def test_a_checkpoint_of_no_supported_family_is_refused_before_images_are_read(setup, no_work, tmp_path, network):
    from transformers import AutoModel, BertConfig, ConvNextConfig

    config = (
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8, vocab_size=16)
        if network == "bert"
        else ConvNextConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1])
    )
    folder = tmp_path / network
    AutoModel.from_config(config).save_pretrained(folder)
    with pytest.raises(
        ValueError, match=rf"^--model_name_or_path {folder}: a '{network}' model: hf_resnet fine-tunes"
    ):
        hf_resnet.finetune(**{**setup, "model_name_or_path": str(folder)})


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
    (["--learning_rate", "fast"], "--learning_rate fast: expected a number"),  # before torch loads
    (["--lerning_rate", "0.1"], "no such flag here: --lerning_rate (did you mean --learning_rate?)"),
    (["--train_dir", "images"], "--train_dir images: no class sub-folders (2 images lie directly in it)."),
    (["typo.yaml"], "typo.yaml: unknown key 'num_train_epoch'; did you mean 'num_train_epochs'?"),
    (["broken.yaml"], "while parsing"),
    (["twice.yaml"], "twice.yaml line 3: the key 'learning_rate' is given twice; keep one"),
    (["twice.json"], "twice.json: the key 'arch' is given twice; keep one (JSON would keep the last silently)"),
    (["--train_val_split", "2"], "--train_val_split 2.0: must be in (0, 1)"),  # named as given, not as the field
    (["--model_type", "vit"], "--model_type vit: hf_resnet fine-tunes ResNets only"),
    (["--recipe", "images"], "--recipe images: the folder has no recipe.json (a finished or stopped hf_resnet run"),
    (["--backbone_learning_rate", "-1e-5"], "--backbone_learning_rate -1e-05: must be > 0"),
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
    (tmp_path / "twice.yaml").write_text("arch: resnet-18\nlearning_rate: 0.1\nlearning_rate: 0.2\n")
    (tmp_path / "twice.json").write_text('{"arch": "resnet-18", "arch": "resnet-34"}')
    before = _files(tmp_path)
    common = ["--arch", "resnet-18", "--train_dir", "train", "--output_dir", "out"]
    argv = args if args[0].endswith((".yaml", ".json")) else [*common, *args]
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
    assert "Traceback" not in stdout + stderr and "Accepted with no effect" not in stdout  # refused, not accepted
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


# ----------------------------------------------------------------------------- a Hub dataset, reachable or not


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Online mode pointed at a port nothing listens on: what a machine without a connection meets, minus DNS."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")
    return constants


def _cache_as_hub_dataset(images: Path, cache: Path, name: str) -> None:
    """What `load_dataset(name)` leaves in the datasets cache, made from a local image folder without the Hub."""
    import shutil

    import datasets

    datasets.load_dataset("imagefolder", data_dir=str(images), cache_dir=str(cache / "build"))
    built = next((cache / "build" / "imagefolder").iterdir())
    target = cache / name.replace("/", "___") / "default"
    shutil.copytree(built, target)
    for arrow in target.rglob("imagefolder-*"):
        arrow.rename(arrow.with_name(arrow.name.replace("imagefolder-", f"{name.split('/')[-1]}-")))


def test_an_unreachable_hub_is_answered_at_once_and_a_cached_dataset_is_read_offline(
    setup, tmp_path, unreachable_hub, monkeypatch
):
    import time

    import datasets

    from hf_resnet.runtime.availability import hub_dataset_problem

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    with pytest.raises(
        ArgumentError, match=r"^--dataset_name nobody/absent: the Hub cannot be reached \(ConnectError\)"
    ):
        validate(
            *hf_resnet.parse_args(["--arch", "resnet-18", "--dataset_name", "nobody/absent", "--output_dir", "o"])
        )
    assert time.perf_counter() - start < 5  # one request, no retries (datasets alone retries for about 30 s)
    assert not unreachable_hub.HF_HUB_OFFLINE

    _cache_as_hub_dataset(Path(setup["train_dir"]), tmp_path / "cache", "somebody/shapes")
    assert hub_dataset_problem("somebody/shapes") is None
    assert unreachable_hub.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE  # the load that follows reads the cache
    start = time.perf_counter()
    assert datasets.load_dataset("somebody/shapes")["train"].num_rows == 12
    assert time.perf_counter() - start < 5


def _cache_as_hub_model(checkpoint: Path, cache: Path, name: str) -> None:
    """What `from_pretrained(name, cache_dir=cache)` leaves in the Hub cache, made from a local checkpoint."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{name.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_model_id_with_the_hub_unreachable_is_one_line_at_once_and_a_cached_one_loads_offline(
    setup, tmp_path, unreachable_hub
):
    import time

    from transformers import AutoConfig

    cache = tmp_path / "hub-cache"
    args = ["--train_dir", setup["train_dir"], "--output_dir", str(tmp_path / "o"), "--cache_dir", str(cache)]
    start = time.perf_counter()
    with pytest.raises(
        ArgumentError,
        match=r"^--model_name_or_path nobody/absent: the Hub cannot be reached \(ConnectError\), and the model is not "
        r"in the cache; connect once to download it, or give a local model folder$",
    ):
        validate(*hf_resnet.parse_args(["--model_name_or_path", "nobody/absent", *args]))
    assert time.perf_counter() - start < 5  # one request, no retries (from_pretrained alone retries for about 30 s)
    assert not unreachable_hub.HF_HUB_OFFLINE

    _cache_as_hub_model(Path(setup["model_name_or_path"]), cache, "somebody/tiny")
    validate(*hf_resnet.parse_args(["--model_name_or_path", "somebody/tiny", *args]))
    assert unreachable_hub.HF_HUB_OFFLINE  # the load that follows reads the cache
    start = time.perf_counter()
    assert AutoConfig.from_pretrained("somebody/tiny", cache_dir=str(cache)).num_labels == 3
    assert time.perf_counter() - start < 5


def test_a_hub_model_the_hub_does_not_have_is_one_line_before_any_work(hub, setup, tmp_path, no_work):  # noqa: F811
    from huggingface_hub import HfApi

    from hf_resnet.families.loading import source_problem

    api = HfApi(token=TOKEN)
    api.create_repo("user/tiny")
    api.upload_folder(folder_path=setup["model_name_or_path"], repo_id="user/tiny")
    argv = ["--train_dir", setup["train_dir"], "--output_dir", str(tmp_path / "o")]
    with pytest.raises(ArgumentError, match=r"^--model_name_or_path user/absent: no such local folder, and no such "):
        validate(*hf_resnet.parse_args(["--model_name_or_path", "user/absent", *argv]))
    with pytest.raises(ArgumentError, match=r"^--model_name_or_path user/tiny: the model has no revision 'v9' on the"):
        validate(*hf_resnet.parse_args(["--model_name_or_path", "user/tiny", "--revision", "v9", *argv]))
    assert source_problem("user/tiny", need_processor=False) is None  # there: nothing to refuse


# ----------------------------------------------------------------------------- *_steps flags given alone

#: (flags, then eval_strategy, eval_steps, save_strategy, save_steps, logging_strategy) as the run uses them.
STEP_CADENCES = [
    ([], ("epoch", None, "epoch", 500, "epoch")),
    (["--save_steps", "2"], ("epoch", None, "steps", 2, "epoch")),
    (["--eval_steps", "3"], ("steps", 3, "epoch", 500, "epoch")),
    (["--logging_steps", "5"], ("epoch", None, "epoch", 500, "steps")),
    (["--save_steps", "4", "--load_best_model_at_end", "true"], ("steps", 4, "steps", 4, "epoch")),
    (["--eval_steps", "2", "--early_stopping_patience", "2"], ("steps", 2, "steps", 2, "epoch")),
    (
        ["--eval_steps", "2", "--save_steps", "6", "--load_best_model_at_end", "true"],
        ("steps", 2, "steps", 6, "epoch"),
    ),
    (["--eval_steps", "2", "--save_strategy", "epoch"], ("steps", 2, "epoch", 500, "epoch")),
    (["--save_steps", "2", "--eval_strategy", "no"], ("no", None, "steps", 2, "epoch")),
]


@pytest.mark.parametrize(
    "flags, expected", STEP_CADENCES, ids=[" ".join(flags) or "none" for flags, _ in STEP_CADENCES]
)
def test_a_steps_flag_alone_switches_its_strategy_to_steps(flags, expected):
    _, _, args = hf_resnet.parse_args(["--arch", "resnet-18", "--train_dir", "photos", "--output_dir", "o", *flags])
    strategies = (args.eval_strategy, args.eval_steps, args.save_strategy, args.save_steps, args.logging_strategy)
    assert tuple(getattr(value, "value", value) for value in strategies) == expected


def test_a_full_disk_is_recognised_in_each_form_the_writers_raise_it(tmp_path, monkeypatch):
    """The errors as a 1 MB tmpfs gave them: Python's OSError, safetensors' message, torch.save's opaque one."""
    import errno
    import shutil

    from safetensors import SafetensorError

    from hf_resnet.training.checkpoints import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not is_disk_full(torch_error, tmp_path)  # room left: some other failure
    free = shutil.disk_usage(tmp_path)._replace(free=4096)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: free)
    assert is_disk_full(torch_error, tmp_path / "not-yet-created")
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    assert not is_disk_full(ValueError("os error 13)"), tmp_path)


def test_save_steps_alone_saves_every_n_steps_and_a_full_disk_is_one_line_keeping_the_last_checkpoint(
    setup, tmp_path, monkeypatch, capfd
):
    import errno

    import torch

    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):  # the disk fills up while checkpoint-2 is being written
        if "checkpoint-2" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    out = Path(setup["output_dir"])
    validation = make_image_folder(tmp_path / "val", per_class=2, seed=3)
    argv = ["train", "--model_name_or_path", setup["model_name_or_path"], "--train_dir", setup["train_dir"]]
    argv += ["--validation_dir", str(validation), "--output_dir", str(out), "--per_device_train_batch_size", "2"]
    argv += ["--save_steps", "1", "--max_steps", "3", "--disable_tqdm", "true", "--dataloader_num_workers", "0"]
    monkeypatch.setattr(torch, "save", full_disk)
    capfd.readouterr()
    assert cli(argv) == 1
    _, stderr = capfd.readouterr()
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"hf-resnet train: error: no space left on the disk of --output_dir {out} while saving; the last checkpoint, "
        "checkpoint-1, is intact: free space, then rerun with --resume_from_checkpoint last"
    )
    # Saved at step 1 of a 6-step epoch: --save_steps alone saves every N steps.
    assert checkpoint_problem(out / "checkpoint-1") is None
    assert not (out / "checkpoint-2").exists() and not list(out.glob(".staging/checkpoint-2"))

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the advice works
    assert cli([*argv, "--resume_from_checkpoint", "last"]) == 0
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
