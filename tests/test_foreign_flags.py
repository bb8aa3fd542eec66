"""timm's train.py and torchvision's reference command lines, run as their users type them.

The two lines are the ones their READMEs teach, with a local folder and a tiny checkpoint in place of
ImageNet and resnet50, and a run of two epochs; one goes through `hf-resnet train`, the other through
`accelerate launch recipes/finetune.py`. Refusals are checked in a fresh interpreter, where torch must
not load before the one line is printed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TEST_PYTHONPATH, accelerate_launch, make_image_folder, save_tiny_checkpoint

from hf_resnet.config.foreign_flags import FLAGS_FILE, ForeignFlagError, translate
from hf_resnet.config.parsing import render_flags

TIMM_LINE = (
    "--pretrained --num-classes 3 --epochs 2 -b 8 --opt adamw --lr 1e-3 --weight-decay 0.05 --sched cosine "
    "--warmup-epochs 1 --smoothing 0.1 --drop-path 0.05 --aa rand-m9-mstd0.5 --reprob 0.25 --mixup 0.2 --cutmix 1.0 "
    "--model-ema --amp"
).split()
TORCHVISION_LINE = (
    "--epochs 2 --batch-size 8 --opt sgd --lr 0.1 --wd 1e-4 --lr-scheduler cosineannealinglr --label-smoothing 0.1 "
    "--auto-augment ta_wide --mixup-alpha 0.2 --cutmix-alpha 1.0 --model-ema"
).split()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A tiny checkpoint and a data folder in timm's and torchvision's layout (DIR/train, DIR/val)."""
    root = tmp_path_factory.mktemp("foreign")
    save_tiny_checkpoint(root / "ckpt")
    make_image_folder(root / "data" / "train", per_class=8, seed=1)
    make_image_folder(root / "data" / "val", per_class=3, seed=2)
    return root


def test_a_timm_train_py_line_runs_through_hf_resnet_train_with_its_values_mapped(home, caplog):
    from hf_resnet.cli import main as cli

    caplog.set_level(logging.WARNING, logger="hf_resnet.config.parsing")
    out = home / "timm-out"
    code = cli(
        ["train", "--model", str(home / "ckpt"), *TIMM_LINE, "--data-dir", str(home / "data"), "--output", str(out)]
        + ["--logging_steps", "1"]
    )
    assert code == 0
    (mapped,) = [record.getMessage() for record in caplog.records if "Flags of other scripts" in record.getMessage()]
    assert "--sched cosine -> --lr_scheduler_type cosine" in mapped and "-b -> --per_device_train_batch_size" in mapped
    recipe = json.loads((out / "recipe.json").read_text())
    training, steps = recipe["training"], recipe["recipe"]
    assert training["num_train_epochs"] == 2 and training["per_device_train_batch_size"] == 8
    assert (training["optim"], training["weight_decay"], training["lr_scheduler_type"]) == (
        "adamw_torch_fused",
        0.05,
        "cosine",
    )
    assert training["warmup_steps"] == 0.5 and training["ema_decay"] == 0.9998  # 1 of 2 epochs; timm's decay
    augmentation = {key: steps["augmentation"][key] for key in ("auto_augment", "random_erasing", "mixup_alpha")}
    assert augmentation == {"auto_augment": "rand", "random_erasing": 0.25, "mixup_alpha": 0.2}
    assert steps["augmentation"]["cutmix_alpha"] == 1.0 and steps["augmentation"]["label_smoothing_factor"] == 0.1
    assert recipe["model"]["drop_path_rate"] == 0.05 and steps["precision"].startswith("bf16")
    assert recipe["validation"]["folder"].endswith("val")  # torchvision's and timm's DIR/val
    # --lr 1e-3 trains at 1e-3: the head's rate peaks there after the warm-up.
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    peak = max(entry["learning_rate/head"] for entry in history if "learning_rate/head" in entry)
    assert peak == pytest.approx(1e-3) and steps["learning_rates"]["head"] == 1e-3


def test_a_torchvision_references_line_runs_through_accelerate_launch_with_its_values_mapped(home):
    out = home / "tv-out"
    args = [
        "--model",
        str(home / "ckpt"),
        *TORCHVISION_LINE,
        "--data-path",
        str(home / "data"),
        "--output-dir",
        str(out),
    ]
    launched = accelerate_launch(ROOT / "recipes" / "finetune.py", args)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    assert "--lr-scheduler cosineannealinglr -> --lr_scheduler_type cosine" in launched.stdout + launched.stderr
    training = json.loads((out / "recipe.json").read_text())["training"]
    augmentation = json.loads((out / "recipe.json").read_text())["recipe"]["augmentation"]
    assert (training["optim"], training["optim_args"]) == ("sgd", "momentum=0.9")  # torchvision's: no Nesterov
    assert (training["learning_rate"], training["weight_decay"], training["lr_scheduler_type"]) == (
        0.1,
        1e-4,
        "cosine",
    )
    assert training["ema_decay"] == 0.9998 and training["label_smoothing_factor"] == 0.1
    assert (augmentation["auto_augment"], augmentation["mixup_alpha"], augmentation["cutmix_alpha"]) == (
        "trivial",
        0.2,
        1.0,
    )


@pytest.mark.parametrize(
    "flags, line",
    [
        (
            ["--lr_sch", "cosine"],
            "--lr_sch (abbreviations are not accepted; in full: --lr_scheduler_kwargs, --lr_scheduler_type)",
        ),
        (["--epoch", "3"], "--epoch (abbreviations are not accepted; in full: --epochs)"),
        (["--lr", "1e-3", "--lerning_rate", "1"], "no such flag here: --lerning_rate (did you mean --learning_rate?)"),
        (["--sched", "step"], "--sched step: no equivalent here; choose one of cosine, cosineannealinglr"),
        (["--aa", "augmix-m5"], "--aa augmix-m5: no equivalent here (AutoAugment's fixed policies and AugMix"),
        (["--model", "resnet5O"], "--model resnet5O: not a checkpoint folder, Hub id, transformers layout"),
        (["--lr", "-1"], "--lr -1.0: must be > 0"),
        (["--epochs", "two"], "--epochs two: expected a number"),
        (["--auto_augment", "augmix"], "--auto_augment augmix: choose one of none, trivial, rand"),
        (["--arch", "resnet5Od"], "--arch resnet5Od: choose a transformers layout (resnet-18, resnet-34, resnet-50,"),
    ],
)
def test_a_flag_that_is_not_ours_is_refused_in_one_line_before_torch_is_imported(tmp_path, flags, line):
    probe = (
        "import sys, time; from hf_resnet.cli import main; code = main(['train', *sys.argv[1:]]); "
        "print(code, 'torch' in sys.modules)"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", probe, *flags, "--output_dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": TEST_PYTHONPATH, "PATH": "/usr/bin:/bin"},
    )
    elapsed = time.monotonic() - started
    assert result.stdout.split() == ["2", "False"], result.stderr[-2000:]
    (refusal,) = result.stderr.strip().splitlines()
    assert refusal.startswith("hf-resnet train: error: ") and line in refusal
    assert elapsed < 1.0
    assert not (tmp_path / "out").exists()


def test_values_are_translated_as_each_project_means_them(tmp_path):
    (tmp_path / "timm" / "train").mkdir(parents=True)
    (tmp_path / "timm" / "validation").mkdir()
    (tmp_path / "bare" / "train").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (tmp_path / "both" / "train" / name).mkdir(parents=True)
    assert translate(["--data-dir", str(tmp_path / "timm")])[0] == [
        "--train_dir",
        str(tmp_path / "timm" / "train"),
        "--validation_dir",
        str(tmp_path / "timm" / "validation"),
    ]
    flags, mapped = translate(["--data-path", str(tmp_path / "bare")])
    assert flags == ["--train_dir", str(tmp_path / "bare" / "train")] and "a stratified share" in mapped[0]
    assert translate(["--model", "resnet50"])[0] == ["--arch", "resnet50"]  # from scratch, as timm without weights
    assert translate(["--model", "resnet50", "--pretrained"])[0] == ["--model_name_or_path", "timm/resnet50.a1_in1k"]
    assert translate(["--model", "resnet-50", "--pretrained"])[0] == ["--model_name_or_path", "microsoft/resnet-50"]
    torchvision_weights = ["--model", "resnet50", "--weights", "ResNet50_Weights.IMAGENET1K_V2"]
    assert translate(torchvision_weights)[0] == ["--model_name_or_path", "timm/resnet50.tv2_in1k"]  # timm's copy
    assert translate(["--model", "hf-hub:timm/resnet18.a1_in1k"])[0] == [
        "--model_name_or_path",
        "timm/resnet18.a1_in1k",
    ]
    assert translate(["--input-size", "3", "160", "160", "--img-size", "160"])[0] == [
        "--image_size",
        "160",
        "--img-size",
        "160",
    ]
    assert translate(["--opt", "sgd", "--sched", "cosine"])[0][:4] == [
        "--optim",
        "sgd",
        "--optim_args",
        "momentum=0.9,nesterov=True",
    ]
    assert translate(["--opt", "momentum", "--model-ema", "--model-ema-decay", "0.99"])[0] == [
        "--optim",
        "sgd",
        "--optim_args",
        "momentum=0.9",
        "--ema_decay",
        "0.99",
    ]
    assert "the summary names" in translate(["--num-classes", "7", "--data-dir", str(tmp_path / "bare")])[1][0]
    for refused in (
        ["--num-classes", "10", "--data-dir", str(tmp_path / "both")],  # three class folders in its train
        ["--input-size", "1", "32", "32"],
        ["--pretrained"],
        ["--warmup-epochs", "3", "--epochs", "2"],
        ["--model", "resnet18", "--weights", "ResNet50_Weights.IMAGENET1K_V1"],
    ):
        with pytest.raises(ForeignFlagError):
            translate(refused)


def test_the_shipped_flag_table_is_the_parsers():
    shipped = (ROOT / "hf_resnet" / "config" / FLAGS_FILE).read_text()
    assert shipped == render_flags(), (
        "regenerate: python -c \"from hf_resnet.config.parsing import render_flags; print(render_flags(), end='')\" "
        f"> hf_resnet/config/{FLAGS_FILE}"
    )


def test_the_other_commands_take_flags_only_in_full_too(capsys):
    from hf_resnet.cli import build_parser

    with pytest.raises(SystemExit) as exit_code:
        build_parser().parse_args(["classify", "cat.png", "--model", "m", "--top", "3"])  # --top-k in full
    assert exit_code.value.code == 2 and "unrecognized arguments: --top 3" in capsys.readouterr().err
