"""Fixtures: tiny checkpoints and image folders built on the spot, so no test needs the Hub."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Set before huggingface_hub and datasets are imported: they read these once, at import.
# Tests never reach the network; fail fast instead of waiting on timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests compare numbers exactly: training runs in fp32 unless a test asks for another precision (the user's
# explicit choice, as far as hf_resnet can tell), whatever bf16 support the CPU has.
os.environ.setdefault("ACCELERATE_MIXED_PRECISION", "no")
# Decoded-image caches and generated digits go to a folder of this session's own, not the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="hf_resnet_tests_")
os.environ["HF_RESNET_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification  # noqa: E402
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402

TINY_SIZE = 32
ROOT = Path(__file__).resolve().parents[1]
#: Subprocesses import the tests' helpers and this checkout's hf_resnet (not another installed copy).
TEST_PYTHONPATH = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
#: What every finished run writes, like the transformers examples.
OUTPUT_FILES = (
    "model.safetensors",
    "config.json",
    "preprocessor_config.json",
    "README.md",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "trainer_state.json",
)


def launch_command(
    script: Path, args: list[str], processes: int = 1, launcher: list[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """`accelerate launch [--multi_gpu --num_processes N] [launcher flags] script args` on the CPU; and its env.

    Two or more processes are launched with the shipped `recipes/accelerate/multi-gpu.yaml`, so every
    multi-process test also runs that config (its GPU count and precision overridden by the flags).
    """
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *launcher,  # last, so its flags win
    ]
    extra = {"PYTHONPATH": TEST_PYTHONPATH}
    if processes > 1:
        if "--config_file" not in launcher:
            command[3:3] = ["--config_file", str(ROOT / "recipes" / "accelerate" / "multi-gpu.yaml")]
        command.insert(3, "--multi_gpu")
        # Two real processes on a CPU machine; one thread each so they do not fight over 2 cores.
        extra |= {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    return [*command, str(script), *args], {**os.environ, **extra}


def accelerate_launch(
    script: Path,
    args: list[str],
    processes: int = 1,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """Run `accelerate launch` (see `launch_command`) to the end."""
    command, launch_env = launch_command(script, args, processes)
    return subprocess.run(
        command, cwd=cwd, env={**launch_env, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def tiny_config(num_labels: int = 3, layer_type: str = "basic", **overrides) -> ResNetConfig:
    """A ResNet with the real structure (stem, 4 stages, head) and a few thousand parameters."""
    fields = dict(
        embedding_size=8,
        hidden_sizes=[8, 12, 16, 24],
        depths=[1, 1, 1, 1],
        layer_type=layer_type,
        num_labels=num_labels,
        id2label={i: f"class_{i}" for i in range(num_labels)},
        label2id={f"class_{i}": i for i in range(num_labels)},
    )
    fields.update(overrides)
    return ResNetConfig(**fields)


def tiny_processor(size: int = TINY_SIZE) -> ConvNextImageProcessor:
    # Same processor class, crop_pct and normalisation as microsoft/resnet-50, at test size.
    return ConvNextImageProcessor(
        size={"shortest_edge": size}, crop_pct=0.875, image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD
    )


def save_tiny_checkpoint(path: Path, num_labels: int = 3, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    model = ResNetForImageClassification(tiny_config(num_labels=num_labels, **overrides))
    # Non-trivial BatchNorm statistics, so "buffers unchanged" is a real check.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    tiny_processor().save_pretrained(path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A saved 3-label tiny ResNet with its image processor, like a Hub checkpoint on disk."""
    return save_tiny_checkpoint(tmp_path / "tiny-resnet")


def shape_image(label: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A learnable picture: class 0 = bright square, 1 = horizontal bar, 2 = vertical bar, on noise."""
    array = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    lo, hi = size // 4, 3 * size // 4
    colour = np.array([230, 200, 40], dtype=np.uint8)
    if label == 0:
        array[lo:hi, lo:hi] = colour
    elif label == 1:
        array[size // 2 - 4 : size // 2 + 4, 2:-2] = colour
    elif label == 2:
        array[2:-2, size // 2 - 4 : size // 2 + 4] = colour
    else:
        array[::4, ::4] = colour  # extra classes: a dot grid shifted per class
        array = np.roll(array, label, axis=1)
    return Image.fromarray(array)


def make_image_folder(root: Path, per_class: int = 12, classes=("circle", "hbar", "vbar"), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(index, rng).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.fixture
def image_folders(tmp_path: Path) -> tuple[Path, Path]:
    """(train_dir, validation_dir) of three learnable shape classes as PNG files."""
    train = make_image_folder(tmp_path / "train", per_class=24, seed=1)
    val = make_image_folder(tmp_path / "val", per_class=8, seed=2)
    return train, val


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> Path:
    """This checkout built into a wheel and installed alone (`pip install --target`): the folder to put on PYTHONPATH.

    Built once per session: a wheel build and install cost more than the tests that use them.
    """
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(ROOT)]
    built = subprocess.run(build, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("hf_resnet-*.whl")
    site = root / "site"
    install = [*pip, "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return site


#: Classes of `multi_shape_image`, each drawn in its own place so a picture can show any set of them.
MULTI_SHAPES = ("square", "hbar", "vbar")


def multi_shape_image(present, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A learnable multi-label picture: a square (top left), a horizontal bar (bottom), a vertical bar (right)."""
    array = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    colour = np.array([230, 200, 40], dtype=np.uint8)
    places = {
        0: (slice(size // 10, size * 4 // 10), slice(size // 10, size * 4 // 10)),
        1: (slice(size * 7 // 10, size * 17 // 20), slice(size // 20, size * 6 // 10)),
        2: (slice(size // 20, size * 6 // 10), slice(size * 7 // 10, size * 17 // 20)),
    }
    for index in present:
        array[places[index]] = colour
    return Image.fromarray(array)


def label_sets(count: int) -> list[list[str]]:
    """`count` label sets cycling through every subset of MULTI_SHAPES, the empty one included."""
    subsets = [[name for bit, name in enumerate(MULTI_SHAPES) if mask >> bit & 1] for mask in range(8)]
    return [subsets[i % len(subsets)] for i in range(count)]


def make_multi_label_folder(root: Path, count: int = 24, seed: int = 0, sets: list[list[str]] | None = None) -> Path:
    """A multi-label image folder: PNG files and the metadata.jsonl listing each one's label set."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, labels in enumerate(sets or label_sets(count)):
        multi_shape_image([MULTI_SHAPES.index(name) for name in labels], rng).save(root / f"scene_{i:03d}.png")
        rows.append(json.dumps({"file_name": f"scene_{i:03d}.png", "labels": labels}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


#: What the libraries said before the console was quieted, and the false warning on a new folder.
CHATTER = (
    "HTTP Request",
    "LOAD REPORT",
    "incompatible to the `id2label` map",
    "backend is not available",
    "save_pretrained` method is disabled",
    "removed the previous run",
    "eval_recall/",
    "***** train metrics *****",
    "{'loss'",
)
#: A progress bar's redraw (tqdm: `NN%|`, a rate) or the cursor moves between bars.
PROGRESS = re.compile(r"\d+%\||(it|s|B)/s\]|s/it\]|^(\x1b\[A)+$")


def console_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines a person reads on the terminal (stdout and stderr), progress bars and blank lines left out."""
    text = (result.stdout + "\n" + result.stderr).replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.search(line.strip())]


def train(flags: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    run_flags = ["--train_dir", "photos", "--num_train_epochs", "1", "--eval_steps", "0.5"]
    run_flags += ["--per_device_train_batch_size", "4", "--image_cache", "off"]
    env = {**os.environ, **(env or {}), "PYTHONPATH": TEST_PYTHONPATH}
    command = [sys.executable, "-m", "hf_resnet", "train", *run_flags, *flags]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_quiet(result: subprocess.CompletedProcess, output: str) -> None:
    """A run with two evaluations said at most 15 lines besides progress bars, and none of the libraries' chatter."""
    assert result.returncode == 0, result.stderr[-3000:]
    lines = console_lines(result)
    assert len(lines) <= 15, "\n".join(lines)
    assert [line for line in lines if any(noise in line for noise in CHATTER)] == []
    evaluations = [line for line in lines if line.startswith("Evaluation at epoch")]
    assert len(evaluations) == 2 and all("accuracy" in line for line in evaluations)
    assert lines[-2].startswith("Held-out accuracy") and lines[-2].endswith(f"results in {output}/")
    assert any("hf_resnet run: model:" in line for line in lines)


def refused_line(argv: list[str], capfd) -> str:
    """The last line a command refusing `argv` prints, once its exit code 2 and the absent traceback are checked."""
    from hf_resnet.cli import main as cli

    capfd.readouterr()
    code = cli(argv)
    out, err = capfd.readouterr()
    assert code == 2, err[-2000:]
    assert "Traceback" not in out + err
    return err.strip().splitlines()[-1]
