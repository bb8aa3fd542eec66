"""Two real processes on the CPU (`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2`)."""

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, accelerate_launch, launch_command, shape_image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hf_resnet
from hf_resnet.data.images import open_image
from hf_resnet.training.ema import EMA_FILE


def launch_two(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return accelerate_launch(ROOT / "recipes" / "finetune.py", args, processes=2, cwd=cwd, timeout=timeout)


def _flags(checkpoint, train, val, out):
    return [
        "--model_name_or_path",
        str(checkpoint),
        "--train_dir",
        str(train),
        "--validation_dir",
        str(val),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "5",
        "--seed",
        "0",
        "--disable_tqdm",
        "true",
    ]


def test_two_processes_halve_the_steps_and_count_each_eval_image_once(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    out = tmp_path / "two"
    result = launch_two(_flags(tiny_checkpoint, train, val, out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "4 per device x 1 accumulation x 2 processes = 8 per optimizer step" in result.stdout + result.stderr

    single = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "one"),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        seed=0,
        disable_tqdm=True,
        report_to="none",
    )
    steps_one = json.loads((single.output_dir / "trainer_state.json").read_text())["global_step"]
    steps_two = json.loads((out / "trainer_state.json").read_text())["global_step"]
    assert (steps_one, steps_two) == (18, 9)

    # 24 images over 2 ranks in batches of 5 pad the last batch; the metrics must not count the padding.
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert evaluation["eval_samples"] == 24
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    paths = sorted(val.rglob("*.png"))
    labels = torch.tensor([model.config.label2id[p.parent.name] for p in paths])
    with torch.no_grad():
        logits = model(processor([open_image(p) for p in paths], return_tensors="pt")["pixel_values"]).logits
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert evaluation["eval_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert abs(evaluation["eval_loss"] - loss) < 1e-5

    # One output folder, written once: no per-rank copies.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-9"]
    assert len(list(out.glob("**/model.safetensors"))) == 2  # the final model and its one checkpoint


def _truncated(path: Path) -> None:
    shape_image(1, np.random.default_rng(0), size=64).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:400])


def test_bad_image_stops_every_rank_with_the_same_error(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    _truncated(train / "hbar" / "cut.jpg")
    result = launch_two(_flags(tiny_checkpoint, train, val, tmp_path / "out"), cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    # Every rank finds the file (the scan's findings are gathered) and exits with the usage-error code; rank 0
    # alone prints the one line, before torch's launcher reports the failed ranks.
    errors = [line for line in result.stderr.splitlines() if "hf-resnet train: error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "1 bad file(s)" in errors[0] and "cut.jpg: truncated or corrupt image" in errors[0]
    assert "exitcode  : 2" in result.stderr, result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.strip().startswith("File") and "hf_resnet/" in line]
    assert ours == []  # the only traceback is the launcher's own
    assert not (tmp_path / "out").exists()


def test_bad_image_found_mid_training_does_not_deadlock(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    _truncated(train / "hbar" / "cut.jpg")
    flags = _flags(tiny_checkpoint, train, val, tmp_path / "out") + ["--verify_images", "false"]
    result = launch_two(flags, cwd=tmp_path, timeout=300)  # a hang would hit the timeout and fail the test
    assert result.returncode != 0
    assert "cut.jpg: truncated or corrupt image" in result.stderr


def test_streaming_sees_each_sample_once_per_epoch_across_2_ranks_x_2_workers(tmp_path):
    result = accelerate_launch(ROOT / "tests" / "stream_probe.py", [str(tmp_path)], processes=2)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    seen = json.loads((tmp_path / "seen.json").read_text())
    expected = json.loads((tmp_path / "expected.json").read_text())
    assert len(seen) == len(expected) == 40
    assert sorted(seen) == sorted(expected)
    evaluation = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert evaluation["eval_samples"] == 9


def test_frozen_feature_cache_is_split_between_ranks_and_gathered_whole(tmp_path):
    from feature_probe import split

    from hf_resnet.data.image_datasets import EvalImages
    from hf_resnet.data.transforms import build_eval_transform
    from hf_resnet.families import BACKBONE_PARTS
    from hf_resnet.training.frozen_features import compute_features

    result = accelerate_launch(ROOT / "tests" / "feature_probe.py", [str(tmp_path)], processes=2)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    shares = json.loads((tmp_path / "shares.json").read_text())
    assert shares == {"world_size": 2, "shares": [12, 11]}  # 23 images: each rank pushed its share through
    gathered = torch.load(tmp_path / "features.pt")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "ckpt")
    images = EvalImages(split(23), build_eval_transform(AutoImageProcessor.from_pretrained(tmp_path / "ckpt")))
    alone = compute_features(model, images, parts=len(BACKBONE_PARTS), batch_size=4)
    assert gathered.shape == alone.shape
    torch.testing.assert_close(gathered, alone, rtol=0, atol=1e-3)  # same images, same order


@pytest.mark.parametrize("config", sorted((ROOT / "recipes" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 2 and loaded.mixed_precision == "bf16"


def _rates_by_step(output_dir: Path) -> dict[int, dict[str, float]]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return {
        entry["step"]: {key: value for key, value in entry.items() if key.startswith("learning_rate/")}
        for entry in history
        if "loss" in entry
    }


def test_two_processes_unfreeze_at_the_same_step_with_the_same_rates_as_one_and_resume_exactly(
    tiny_checkpoint, image_folders, tmp_path
):
    """Same effective batch (2 x 4 and 1 x 8): same parts thawed at the same optimizer step, same group rates.

    Weights are not compared between the two: each process normalises with its own batch's BatchNorm
    statistics (no --sync_bn on CPU), so they differ by design. A resumed two-process run is compared
    bit for bit with the uninterrupted one instead.
    """
    train, val = image_folders
    # Given after _flags' own, so these win (argparse keeps the last value of a flag).
    schedule = ["--num_train_epochs", "2", "--unfreeze_at_epoch", "1", "--logging_strategy", "steps"]
    schedule += ["--logging_steps", "1"]
    two = tmp_path / "two"
    result = launch_two(_flags(tiny_checkpoint, train, val, two) + schedule, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Epoch 1: unfrozen ['stage1']; still frozen ['embedder']" in result.stdout + result.stderr

    hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "one"),
        num_train_epochs=2,
        unfreeze_at_epoch=1,
        per_device_train_batch_size=8,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    one_rates, two_rates = _rates_by_step(tmp_path / "one"), _rates_by_step(two)
    assert sorted(one_rates) == sorted(two_rates) == list(range(1, 19))
    assert one_rates == two_rates  # every step: the same parts train, at the same rates
    thawed_at = [step for step, rates in two_rates.items() if "learning_rate/stage1" in rates]
    assert thawed_at == list(range(10, 19))  # first step of epoch 1
    assert all("learning_rate/embedder" not in rates for rates in two_rates.values())

    resumed = tmp_path / "resumed"
    flags = _flags(tiny_checkpoint, train, val, resumed) + schedule
    result = launch_two(flags + ["--resume_from_checkpoint", str(two / "checkpoint-9")], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    uninterrupted, again = load_file(two / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(again[name], tensor) for name, tensor in uninterrupted.items())
    assert any(
        not torch.equal(uninterrupted[n], t) for n, t in load_file(tiny_checkpoint / "model.safetensors").items()
    )


def test_sync_bn_on_cpu_processes_is_refused_in_one_line_before_any_work(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    out = tmp_path / "out"
    result = launch_two(_flags(tiny_checkpoint, train, val, out) + ["--sync_bn", "true"], cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert "error: --sync_bn True: torch's SyncBatchNorm cannot run on CPU processes (2 here)" in result.stderr
    assert "hf_resnet run" not in result.stdout + result.stderr and not out.exists()  # no data scan, no model


def _checkpoint_metrics(checkpoint: Path, val: Path, averaged: bool = False) -> tuple[float, float]:
    """(loss, accuracy) of a saved checkpoint (or its weight average) on the validation folder, in one process."""
    model = AutoModelForImageClassification.from_pretrained(checkpoint).eval()
    if averaged:
        state = load_file(str(checkpoint / EMA_FILE))
        model.load_state_dict({name.removeprefix("module."): t for name, t in state.items() if name != "n_averaged"})
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    paths = sorted(val.rglob("*.png"))
    labels = torch.tensor([model.config.label2id[p.parent.name] for p in paths])
    with torch.no_grad():
        logits = model(processor([open_image(p) for p in paths], return_tensors="pt")["pixel_values"]).logits
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(-1) == labels).float().mean().item()


def test_metrics_logged_during_two_process_training_are_those_of_the_saved_checkpoints(
    tiny_checkpoint, image_folders, tmp_path
):
    train, val = image_folders
    (val / "hbar" / sorted((val / "hbar").iterdir())[0].name).unlink()  # 23 images: the last batch is padded
    out = tmp_path / "out"
    flags = _flags(tiny_checkpoint, train, val, out) + [
        *("--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "1"),
        *("--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "4"),
        *("--backbone_learning_rate", "0.05", "--learning_rate", "0.05"),  # big steps: each checkpoint differs
        *("--ema_decay", "0.5"),  # the weight average, evaluated beside them, must be rank 0's saved one too
    ]
    result = launch_two(flags, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    logged = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]
    for entry in logged:
        loss, accuracy = _checkpoint_metrics(out / f"checkpoint-{entry['step']}", val)
        assert entry["eval_loss"] == pytest.approx(loss, abs=1e-5), entry
        assert entry["eval_accuracy"] == pytest.approx(accuracy, abs=1e-6), entry
        loss, accuracy = _checkpoint_metrics(out / f"checkpoint-{entry['step']}", val, averaged=True)
        assert entry["eval_ema_loss"] == pytest.approx(loss, abs=1e-5), entry
        assert entry["eval_ema_accuracy"] == pytest.approx(accuracy, abs=1e-6), entry


def test_multi_node_config_trains_as_two_machine_ranks_on_localhost(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    out = tmp_path / "out"  # one folder both "machines" see, as shared storage would be
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    machines = []
    for rank in (0, 1):
        launcher = ["--config_file", str(ROOT / "recipes" / "accelerate" / "multi-node.yaml"), "--num_machines", "2"]
        launcher += ["--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        # One CPU process per machine: --num_processes is the total over all machines.
        command, env = launch_command(
            ROOT / "recipes" / "finetune.py", _flags(tiny_checkpoint, train, val, out), 2, launcher
        )
        machines.append(
            subprocess.Popen(
                command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    assert "4 per device x 1 accumulation x 2 processes = 8 per optimizer step" in outputs[0]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 9  # 72 images / 8 per step
    assert json.loads((out / "eval_results.json").read_text())["eval_samples"] == 24
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-9"]  # written once, by global rank 0
