"""Training throughput: the usual way (transformers' image-classification example) vs hf_resnet's defaults.

    python benchmarks/train_throughput.py [--arch resnet-18] [--image_size 224] [--batch_size 16] [--steps 12]
                                          [--rounds 3] [--compile] [--accuracy_epochs 0] [--json results.json]
                                          [--ways readme_launch,model_only_channels_last_,decode]
                                          [--launch_variant '--data_overlap workers'] [--decode_images 400]

Both sides train the same randomly initialised model layout (a full fine-tune: nothing
frozen) on the same JPEG folder, with the same batch size and number of steps; rounds are
interleaved (baseline, hf_resnet, model-only, ...), so load from other processes hits all alike.

- baseline: a faithful re-implementation of `examples/pytorch/image-classification/
  run_image_classification.py`'s data path: `load_dataset("imagefolder")`, per-sample PIL
  decode and `torchvision.transforms` (RandomResizedCrop, RandomHorizontalFlip, ToTensor,
  Normalize) in `set_transform`, its `collate_fn`, and a plain `Trainer` with default
  `TrainingArguments` (fp32, no DataLoader workers).
- hf_resnet: `hf_resnet.finetune(...)` with default settings, the same call a user makes.
- model-only: the training step (forward, loss, backward, AdamW) on synthetic tensors already in
  memory: the ceiling for any data path. NCHW at fp32 with the usual allocator, and channels-last
  with hf_resnet's own settings: its default precision (bf16 autocast where the hardware runs bf16
  natively and measured faster, fp32 elsewhere) and, on a CPU, its host-memory reuse
  (`--reuse_host_memory`); also channels-last with the usual allocator, to show what each of the two gives;
  and channels-last with each precision forced (fp32, and bf16 where the hardware runs it natively): the
  faster of the two is the best model-only step, which the README launch is held to, round by round.
- data path per core: training samples per second of decoding and augmentation alone, pinned to one
  core, without and with the decoded-image cache (`--image_cache`): how many cores a faster model needs.

Every run is a fresh Python process (spawned), so nothing one run leaves behind (allocator
state, process-wide malloc settings, compiled kernels) helps or hurts the next.

Images/s are counted from the end of the warm-up steps (worker start-up, allocator warm-up and
cuDNN autotuning excluded) to the last step, on both sides.

The images are real photographs: random crops of the three photos that ship inside installed
wheels (scikit-learn's china.jpg and flower.jpg, 640x427; matplotlib's grace_hopper.jpg,
512x600), 60-100% of each side at the photo's own resolution, saved as JPEG at quality 90 in
one class folder per source photo: 360-640 px on the longer side, the size of most Hub image
datasets. They are not upscaled to camera sizes: resampling smooths away the detail a camera
records and makes JPEGs unrealistically cheap to decode (upscaled to 500-1000 px they
compressed to under 2 bits per pixel; the sources hold 1.6-5.8). No download needed, and the
task (which photo a crop comes from) is learnable, which `--accuracy_epochs` uses to check
that both ways reach the same accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import PIL
import sklearn
import torch
import torchvision
import transformers
from PIL import Image, features
from torchvision.transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from transformers import Trainer, TrainerCallback, TrainingArguments

import hf_resnet
from hf_resnet.families import BACKBONE_PARTS
from hf_resnet.families.resnet import default_image_processor, resnet_config
from hf_resnet.runtime.host_memory import reused_host_memory
from hf_resnet.runtime.precision import default_mixed_precision

#: The photos shipped in installed wheels; each becomes one class.
SOURCE_PHOTOS = {
    "china": Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
    "flower": Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
    "grace_hopper": Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg",
}
#: Share of each side of the source photo a crop keeps (native resolution, no resampling).
CROP_SIDE = (0.6, 1.0)
#: Crops for the accuracy check: small patches (sky, foliage, background), so the task is not solved outright and a
#: difference between the two ways of training would show.
ACCURACY_CROP_SIDE = (0.15, 0.35)
#: Quality camera and phone apps save at.
JPEG_QUALITY = 90
#: CPU share other processes may use for the machine to count as quiet between runs (--wait_quiet).
QUIET_CPU_SHARE = 0.05


def photo_folder(root: Path, per_class: int, seed: int = 0, crop_side: tuple[float, float] = CROP_SIDE) -> Path:
    """Write `per_class` random crops of each source photo as JPEGs in `root/<photo>/`; reuse them if present.

    >>> photo_folder(Path("/tmp/photos"), per_class=4)  # doctest: +SKIP
    PosixPath('/tmp/photos')
    """
    rng = np.random.default_rng(seed)
    for name, path in SOURCE_PHOTOS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if len(list(folder.glob("*.jpg"))) >= per_class:
            continue
        photo = Image.open(path).convert("RGB")
        width, height = photo.size
        for i in range(per_class):
            crop_w, crop_h = (round(side * rng.uniform(*crop_side)) for side in (width, height))
            left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
            crop = photo.crop((left, top, left + crop_w, top + crop_h))
            crop.save(folder / f"{name}_{i:05d}.jpg", quality=JPEG_QUALITY)
    return root


class StepTimer(TrainerCallback):
    """Wall-clock time at the end of each optimizer step; GPU work is waited for at the two ends of the window."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.times = warmup, steps, {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, self.steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times[state.global_step] = time.perf_counter()

    def images_per_second(self, batch_size: int) -> float:
        return (self.steps - self.warmup) * batch_size / (self.times[self.steps] - self.times[self.warmup])


def _quiet_arguments(output_dir: str, args) -> dict:
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        seed=args.seed,
    )


def baseline_trainer(train_dir: Path, validation_dir: Path | None, output_dir: str, args, **overrides) -> Trainer:
    """transformers' image-classification example, as written: datasets imagefolder, set_transform, plain Trainer."""
    from datasets import load_dataset

    dataset = load_dataset("imagefolder", data_dir=str(train_dir), split="train")
    labels = dataset.features["label"].names
    config = resnet_config(
        args.arch,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(args.seed)
    model = transformers.ResNetForImageClassification(config)
    image_processor = default_image_processor(args.image_size)
    # From here on, the example's code (names and all).
    if "shortest_edge" in image_processor.size:
        size = image_processor.size["shortest_edge"]
    else:
        size = (image_processor.size["height"], image_processor.size["width"])
    normalize = Normalize(mean=image_processor.image_mean, std=image_processor.image_std)
    _train_transforms = Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize])
    _val_transforms = Compose([Resize(size), CenterCrop(size), ToTensor(), normalize])

    def train_transforms(example_batch):
        example_batch["pixel_values"] = [_train_transforms(image.convert("RGB")) for image in example_batch["image"]]
        return example_batch

    def val_transforms(example_batch):
        example_batch["pixel_values"] = [_val_transforms(image.convert("RGB")) for image in example_batch["image"]]
        return example_batch

    def collate_fn(examples):
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        labels = torch.tensor([example["label"] for example in examples])
        return {"pixel_values": pixel_values, "labels": labels}

    def compute_metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, axis=1) == p.label_ids).mean())}

    dataset.set_transform(train_transforms)
    validation = None
    if validation_dir is not None:
        validation = load_dataset("imagefolder", data_dir=str(validation_dir), split="train")
        validation.set_transform(val_transforms)
    training_args = TrainingArguments(
        **{**_quiet_arguments(output_dir, args), "remove_unused_columns": False, **overrides}
    )
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        eval_dataset=validation,
        compute_metrics=compute_metrics,
        processing_class=image_processor,
        data_collator=collate_fn,
    )


def run_baseline(train_dir: Path, args) -> float:
    timer = StepTimer(args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = baseline_trainer(train_dir, None, output_dir, args)
        trainer.add_callback(timer)
        trainer.train()
    return timer.images_per_second(args.batch_size)


def _hf_arguments(output_dir: str, args, train_dir: Path, validation_dir: Path) -> dict:
    """The `finetune` arguments every hf_resnet run here shares: model, size, data, and quiet output."""
    return {
        **_quiet_arguments(output_dir, args),
        "arch": args.arch,
        "image_size": args.image_size,
        "train_dir": str(train_dir),
        "validation_dir": str(validation_dir),
    }


def run_hf_resnet(train_dir: Path, validation_dir: Path, args, **overrides) -> tuple[float, dict]:
    """`hf_resnet.finetune` with its defaults; only the run's length, size and output are set."""
    timer = StepTimer(args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as output_dir:
        settings = {
            **_hf_arguments(output_dir, args, train_dir, validation_dir),
            **overrides,
        }
        result = hf_resnet.finetune(callbacks=[timer], **settings)
    return timer.images_per_second(args.batch_size), result.metrics


#: The README's command, as a user launches it (no accelerate config: the launcher's own defaults apply).
README_LAUNCH = (
    "-m",
    "accelerate.commands.launch",
    str(Path(__file__).resolve().parents[1] / "recipes" / "finetune.py"),
)


def _launched_results(
    train_dir: Path, validation_dir: Path, args, steps: int, launcher_flags: tuple, recipe_flags: tuple = ()
) -> dict:
    """`train_results.json` of one `accelerate launch recipes/finetune.py` run (`train_runtime`: seconds inside
    `Trainer.train`), with the data path the run chose (recipe.json)."""
    with tempfile.TemporaryDirectory() as output_dir:
        flags = {
            "arch": args.arch,
            "image_size": args.image_size,
            "train_dir": train_dir,
            "validation_dir": validation_dir,
            "per_device_train_batch_size": args.batch_size,
            "max_steps": steps,
            "eval_strategy": "no",
            "save_strategy": "no",
            "logging_strategy": "no",
            "seed": args.seed,
            "output_dir": Path(output_dir) / "run",
        }
        command = [sys.executable, README_LAUNCH[0], README_LAUNCH[1], *launcher_flags, README_LAUNCH[2]]
        command += [str(item) for key, value in flags.items() for item in (f"--{key}", value)] + list(recipe_flags)
        env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "PYTHONPATH")}
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        results = json.loads((Path(output_dir) / "run" / "train_results.json").read_text())
        recipe = json.loads((Path(output_dir) / "run" / "recipe.json").read_text())
        return {**results, "data_path": recipe["recipe"].get("data_path"), "precision": recipe["recipe"]["precision"]}


def run_readme_launch(
    train_dir: Path, validation_dir: Path, args, launcher_flags: tuple = (), recipe_flags: tuple = ()
) -> dict:
    """Images/s of the README's `accelerate launch recipes/finetune.py`, steps after the warm-up only.

    Two launches that differ only in `--max_steps` (the warm-up, then all steps): the difference of their
    `train_runtime` is the time of the steps after the warm-up, start-up and first steps excluded, as in the
    other ways' timing, without changing anything in what the user runs. The longer launch's own figures
    come with it: the Trainer's `train_samples_per_second` (first step included) and hf_resnet's steady one.
    """
    short = _launched_results(train_dir, validation_dir, args, args.warmup, launcher_flags, recipe_flags)
    full = _launched_results(train_dir, validation_dir, args, args.steps, launcher_flags, recipe_flags)
    return {
        "images_per_second": (args.steps - args.warmup)
        * args.batch_size
        / (full["train_runtime"] - short["train_runtime"]),
        "trainer_samples_per_second": full["train_samples_per_second"],
        "steady_samples_per_second": full.get("train_steady_samples_per_second"),
        "first_step_seconds": full.get("train_first_step_seconds"),
        "data_path": full["data_path"],
        "precision": full["precision"],
    }


def decode_rate(train_dir: Path, args, cache: str) -> dict:
    """Training samples per second of the data path alone on one core: decode (or cut from the cache), augment.

    Pinned to one core with one torch thread, so the figure says how many cores a faster model needs fed.
    The cache is built (in memory) before the clock starts; its build rate is reported beside.
    """
    from hf_resnet.data import image_cache
    from hf_resnet.data.arguments import DataArguments
    from hf_resnet.data.image_datasets import TrainImages
    from hf_resnet.data.sources import load_image_data
    from hf_resnet.data.transforms import build_train_transform, processor_geometry

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    data = load_image_data(DataArguments(train_dir=str(train_dir), verify_images=False), seed=args.seed)
    processor = default_image_processor(args.image_size)
    started = time.perf_counter()
    built = image_cache.build(data.train, processor_geometry(processor), cache)
    build_seconds = time.perf_counter() - started
    images = TrainImages(data.train, build_train_transform(processor, DataArguments()), seed=args.seed, cache=built)
    for index in range(min(8, len(images))):  # first calls: imports, allocator
        images[index]
    count = args.decode_images
    start = time.perf_counter()
    for position in range(count):
        images.set_epoch(position // len(images)) if position % len(images) == 0 else None
        images[position % len(images)]
    figures = {"images_per_second": count / (time.perf_counter() - start)}
    if built is not None:
        figures["cache_build_images_per_second"] = len(images) / build_seconds
    return figures


def run_model_only(
    args,
    channels_last: bool,
    compile_model: bool = False,
    force_bf16: bool = False,
    host_memory: bool | None = None,
    force_fp32: bool = False,
) -> float:
    """The training step on synthetic tensors: forward, cross-entropy, backward, fused AdamW.

    Precision: fp32 in NCHW (the usual way); hf_resnet's default in channels-last; bf16 with `force_bf16`.
    Host memory (`host_memory`, default: as hf_resnet would for the layout): the usual allocator
    in NCHW, hf_resnet's `reused_host_memory` in channels-last, so the channels-last figure is
    the ceiling of hf_resnet's own settings.
    """
    with reused_host_memory(enabled=channels_last if host_memory is None else host_memory):
        return _model_only(args, channels_last, compile_model, force_bf16, force_fp32)


def _model_only(args, channels_last: bool, compile_model: bool, force_bf16: bool, force_fp32: bool = False) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    model = transformers.ResNetForImageClassification(resnet_config(args.arch, num_labels=len(SOURCE_PHOTOS)))
    model.to(device).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    pixels = pixels.contiguous(memory_format=layout)
    labels = torch.randint(0, len(SOURCE_PHOTOS), (args.batch_size,), device=device)
    bf16, fp16, _ = default_mixed_precision() if channels_last else (False, False, "")
    bf16, fp16 = (True, False) if force_bf16 else (False, False) if force_fp32 else (bf16, fp16)
    autocast = torch.bfloat16 if bf16 else torch.float16 if fp16 else None
    scaler = torch.amp.GradScaler(enabled=fp16)
    forward = torch.compile(model) if compile_model else model

    def step():
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            logits = forward(pixel_values=pixels).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    if compile_model:
        _progress(f"compiled and warmed up in {time.perf_counter() - started:.0f} s")
    start = time.perf_counter()
    for _ in range(args.steps - args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (args.steps - args.warmup) * args.batch_size / (time.perf_counter() - start)


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time used by any process over `seconds` (Linux /proc/stat), measured while idle."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_for_quiet(max_wait: float, threshold: float = QUIET_CPU_SHARE) -> float:
    """Wait (up to `max_wait` seconds) until other processes leave the CPU idle; return the share they used last."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
    }
    try:
        model_names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        ]
        info["cpu"] = model_names[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return info


def _overrides(variant: str) -> dict:
    """`--hf_variant` KEY=JSON[,KEY=JSON] as `finetune` keyword arguments."""
    return {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in variant.split(","))}


def _hf_images_per_second(train_dir: Path, validation_dir: Path, args, **overrides) -> float:
    return run_hf_resnet(train_dir, validation_dir, args, **overrides)[0]


def isolated(function, *args, **kwargs):
    """`function(*args, **kwargs)` in a fresh Python process.

    Each run starts from the same state: no allocator pages, compiled kernels or process-wide
    settings (hf_resnet's host-memory settings, say) left behind by the run before it.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


def _native_bf16() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    from hf_resnet.runtime.hardware import native_bf16_cpu

    return native_bf16_cpu() is not None


def _median_of_rounds(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-round ratios: each round's figures were measured minutes apart, under the same load."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def throughput(args, train_dir: Path, validation_dir: Path) -> dict:
    runs = {
        "baseline": (run_baseline, (train_dir, args), {}),
        "readme_launch": (run_readme_launch, (train_dir, validation_dir, args), {}),
        "hf_resnet": (_hf_images_per_second, (train_dir, validation_dir, args), {}),
        "model_only_nchw_fp32": (run_model_only, (args, False), {}),
        "model_only_channels_last": (run_model_only, (args, True), {}),
        "model_only_channels_last_usual_allocator": (run_model_only, (args, True), {"host_memory": False}),
        # Each precision forced, whatever hf_resnet's default here: the best of the two is the ceiling.
        "model_only_channels_last_fp32": (run_model_only, (args, True), {"force_fp32": True}),
        "decode_per_core": (decode_rate, (train_dir, args, "off"), {}),
        "decode_per_core_cached": (decode_rate, (train_dir, args, "memory"), {}),
    }
    if _native_bf16() or args.model_only_bf16:
        runs["model_only_channels_last_bf16"] = (run_model_only, (args, True), {"force_bf16": True})
    if default_mixed_precision()[0] and not torch.cuda.is_available():  # the default is bf16 here: time fp32 too
        runs["readme_launch_fp32"] = (
            run_readme_launch,
            (train_dir, validation_dir, args, ("--mixed_precision", "no")),
            {},
        )
    if args.compile:
        runs["model_only_channels_last_compiled"] = (run_model_only, (args, True), {"compile_model": True})
    for variant in args.hf_variant:
        runs[f"hf_resnet {variant}"] = (_hf_images_per_second, (train_dir, validation_dir, args), _overrides(variant))
    for variant in args.launch_variant:
        runs[f"readme_launch {variant}"] = (
            run_readme_launch,
            (train_dir, validation_dir, args, (), variant.split()),
            {},
        )
    if args.ways:
        wanted = args.ways.split(",")
        runs = {name: run for name, run in runs.items() if any(name.startswith(way) for way in wanted)}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    details: dict[str, list[dict]] = {name: [] for name in runs}
    busy: list[float] = []
    for round_index in range(-args.warmup_rounds, args.rounds):
        for name, run in runs.items():
            if args.wait_quiet > 0 and Path("/proc/stat").exists():
                busy.append(wait_for_quiet(args.wait_quiet))
            function, positional, keywords = run
            launched = function is run_readme_launch  # a process tree of its own already
            result = function(*positional, **keywords) if launched else isolated(function, *positional, **keywords)
            value = result["images_per_second"] if isinstance(result, dict) else result
            if round_index < 0:  # the first round pays for reading the JPEGs into the page cache
                _progress(f"warm-up round {name}: {value:.2f} images/s (not counted)")
                continue
            samples[name].append(value)
            details[name].append(result if isinstance(result, dict) else {})
            _progress(f"round {round_index + 1}/{args.rounds} {name}: {value:.2f} images/s")
    median = {name: statistics.median(values) for name, values in samples.items() if values}
    figures = {
        "images_per_second": median,
        "all_rounds": samples,
        "details": {name: rounds for name, rounds in details.items() if any(rounds)},
        "others_cpu_share_before_runs": busy,
    }
    figures.update(_ratios(samples, details, median))
    return figures


def _ratios(samples: dict, details: dict, median: dict) -> dict:
    """Every ratio the runs asked for allow, each the median of per-round ratios where both sides ran."""
    figures = {}
    if {"readme_launch", "baseline"} <= set(median):
        figures["speedup_vs_baseline"] = _median_of_rounds(samples["readme_launch"], samples["baseline"])
    if {"hf_resnet", "baseline"} <= set(median):
        figures["python_api_speedup_vs_baseline"] = _median_of_rounds(samples["hf_resnet"], samples["baseline"])
    precisions = [
        name for name in ("model_only_channels_last_fp32", "model_only_channels_last_bf16") if name in median
    ]
    if precisions:
        best = max(precisions, key=median.get)
        figures["best_model_only"] = {"way": best, "images_per_second": median[best]}
        # Per round, the better precision of that round: the ceiling a data path is held to.
        ceiling = [max(samples[name][i] for name in precisions) for i in range(len(samples[best]))]
        for name in [name for name in samples if name.startswith("readme_launch") and samples[name]]:
            rounds = details[name]
            figures[f"{name} / best model-only"] = {
                "after_warmup": _median_of_rounds(samples[name], ceiling),
                "steady": _median_of_rounds([r["steady_samples_per_second"] for r in rounds], ceiling),
                "trainer_figure": _median_of_rounds([r["trainer_samples_per_second"] for r in rounds], ceiling),
                "first_step_seconds": statistics.median(r["first_step_seconds"] for r in rounds),
                "data_path": rounds[-1]["data_path"],
                "precision": rounds[-1]["precision"],
            }
    if {"decode_per_core", "decode_per_core_cached"} <= set(median):
        figures["decode_cache_speedup"] = _median_of_rounds(
            samples["decode_per_core_cached"], samples["decode_per_core"]
        )
    if {"readme_launch", "readme_launch_fp32"} <= set(median):
        figures["bf16_speedup_over_fp32"] = _median_of_rounds(samples["readme_launch"], samples["readme_launch_fp32"])
    return figures


class _TrainEnd(TrainerCallback):
    def on_train_end(self, args, state, control, **kwargs):
        self.time = time.perf_counter()


def frozen_backbone(args, train_dir: Path, validation_dir: Path) -> dict:
    """Seconds to train the head on a frozen backbone for `--frozen_epochs`, with and without the feature cache.

    Timed from the `finetune` call (data checks and, with the cache, the one pass through the
    backbone included) to the end of training.
    """
    seconds = {}
    for cache in (False, True):
        end = _TrainEnd()
        with tempfile.TemporaryDirectory() as output_dir:
            settings = {
                **_hf_arguments(output_dir, args, train_dir, validation_dir),
                "max_steps": -1,
                "num_train_epochs": args.frozen_epochs,
                "freeze": ",".join(BACKBONE_PARTS),
                "cache_frozen_features": cache,
            }
            start = time.perf_counter()
            hf_resnet.finetune(callbacks=[end], **settings)
        seconds["cached" if cache else "not_cached"] = end.time - start
        _progress(f"frozen backbone, cache={cache}: {seconds['cached' if cache else 'not_cached']:.1f} s")
    return {"epochs": args.frozen_epochs, "seconds": seconds, "speedup": seconds["not_cached"] / seconds["cached"]}


def accuracy(args, train_dir: Path, validation_dir: Path) -> dict:
    """Train both ways (and each `--hf_variant`) for the same epochs and hyperparameters; evaluate each with its
    own evaluation transform."""
    variants = {f"hf_resnet {variant}": _overrides(variant) for variant in args.hf_variant}
    results: dict[str, list[dict]] = {"baseline": [], "hf_resnet": [], **{name: [] for name in variants}}
    same = dict(learning_rate=1e-3, weight_decay=1e-4, lr_scheduler_type="cosine", warmup_steps=0.05)
    for seed in range(args.accuracy_seeds):
        run_args = argparse.Namespace(**{**vars(args), "seed": seed, "steps": -1})
        epochs = {"num_train_epochs": args.accuracy_epochs}
        with tempfile.TemporaryDirectory() as output_dir:
            trainer = baseline_trainer(train_dir, validation_dir, output_dir, run_args, **same, **epochs)
            trainer.train()
            results["baseline"].append(trainer.evaluate())
        results["hf_resnet"].append(_hf_accuracy_run(train_dir, validation_dir, run_args, same, epochs))
        for name, overrides in variants.items():
            results[name].append(_hf_accuracy_run(train_dir, validation_dir, run_args, {**same, **overrides}, epochs))
        for name, metrics in results.items():
            _progress(
                f"seed {seed} {name}: accuracy {metrics[-1]['eval_accuracy']:.3f}, loss {metrics[-1]['eval_loss']:.3f}"
            )
    return {
        name: {
            "accuracy": [metrics["eval_accuracy"] for metrics in runs],
            "loss": [metrics["eval_loss"] for metrics in runs],
            "mean_accuracy": statistics.mean(metrics["eval_accuracy"] for metrics in runs),
        }
        for name, runs in results.items()
    }


def _hf_accuracy_run(train_dir: Path, validation_dir: Path, args, same: dict, epochs: dict) -> dict:
    with tempfile.TemporaryDirectory() as output_dir:
        settings = {
            **_hf_arguments(output_dir, args, train_dir, validation_dir),
            **same,
            **epochs,
        }
        return hf_resnet.finetune(**settings).metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet-18", help="Layout to train (random init, nothing frozen).")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12, help="Optimizer steps per run, warm-up included.")
    parser.add_argument("--warmup", type=int, default=2, help="Steps left out of the timing.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; medians are reported.")
    parser.add_argument("--warmup_rounds", type=int, default=1, help="Rounds run first and not counted.")
    parser.add_argument("--compile", action="store_true", help="Also time torch.compile on the model-only step.")
    parser.add_argument("--model_only_bf16", action="store_true", help="Also time the model-only step in bf16.")
    parser.add_argument(
        "--hf_variant",
        action="append",
        default=[],
        help="KEY=JSON[,KEY=JSON]: also time hf_resnet with these settings changed (repeatable), e.g. bf16=true; "
        "with --accuracy_epochs, also check its accuracy.",
    )
    parser.add_argument(
        "--launch_variant",
        action="append",
        default=[],
        help="'--flag value ...': also time the README launch with these recipe flags (repeatable), e.g. "
        "'--data_overlap workers' or '--image_cache off'.",
    )
    parser.add_argument(
        "--ways",
        default="",
        help="Comma-separated name prefixes: time only these ways (e.g. readme_launch,model_only_channels_last_,"
        "decode); default: all.",
    )
    parser.add_argument("--decode_images", type=int, default=400, help="Samples each data-path-only run times.")
    parser.add_argument("--frozen_epochs", type=float, default=0, help="> 0: time the frozen-feature cache.")
    parser.add_argument("--accuracy_epochs", type=float, default=0, help="> 0: also compare eval accuracy.")
    parser.add_argument("--accuracy_seeds", type=int, default=2)
    parser.add_argument("--accuracy_images", type=int, default=300, help="Training images for the accuracy check.")
    parser.add_argument(
        "--wait_quiet", type=float, default=0, help="Before each run, wait up to this many seconds for an idle CPU."
    )
    parser.add_argument("--data_dir", default=None, help="Where the JPEG folders are written (kept for reuse).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="Also write the results here.")
    args = parser.parse_args(argv)

    root = Path(args.data_dir or Path(tempfile.gettempdir()) / "hf_resnet_train_throughput")
    per_class = math.ceil(args.steps * args.batch_size / len(SOURCE_PHOTOS))  # one epoch covers every step
    train_dir = photo_folder(root / f"train_{per_class}", per_class, seed=1)
    validation_dir = photo_folder(root / "validation", 30, seed=2)
    report = {
        "command": "python benchmarks/train_throughput.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
    }
    report["load_before"] = os.getloadavg()
    _progress(f"{per_class * len(SOURCE_PHOTOS)} training JPEGs in {train_dir}")
    report["throughput"] = throughput(args, train_dir, validation_dir)
    if args.frozen_epochs > 0:
        report["frozen_backbone"] = frozen_backbone(args, train_dir, validation_dir)
    if args.accuracy_epochs > 0:
        per_class = args.accuracy_images // len(SOURCE_PHOTOS)
        accuracy_train = photo_folder(root / f"patches_{per_class}", per_class, seed=3, crop_side=ACCURACY_CROP_SIDE)
        accuracy_validation = photo_folder(root / "patches_validation", 50, seed=4, crop_side=ACCURACY_CROP_SIDE)
        report["accuracy"] = accuracy(args, accuracy_train, accuracy_validation)
    report["load_after"] = os.getloadavg()

    figures = report["throughput"]
    print(
        f"\n{args.arch} at {args.image_size} px, batch {args.batch_size}, {args.steps - args.warmup} timed steps, "
        f"median of {args.rounds} interleaved rounds"
    )
    for name, value in figures["images_per_second"].items():
        print(f"  {name:42s} {value:8.2f} images/s")
    for key in ("speedup_vs_baseline", "python_api_speedup_vs_baseline", "bf16_speedup_over_fp32"):
        if key in figures:
            print(f"  {key:42s} {figures[key]:8.2f}x")
    if "best_model_only" in figures:
        print(f"  best model-only step: {figures['best_model_only']['way']}")
    for name, ratio in figures.items():
        if name.endswith("/ best model-only"):
            print(
                f"  {name}: {ratio['after_warmup']:.1%} after the warm-up, {ratio['steady']:.1%} steady, "
                f"{ratio['trainer_figure']:.1%} by the Trainer's figure "
                f"(first step {ratio['first_step_seconds']:.1f} s)"
            )
    if "decode_cache_speedup" in figures:
        print(f"  data path per core: {figures['decode_cache_speedup']:.2f}x with the image cache")
    if "frozen_backbone" in report:
        frozen = report["frozen_backbone"]
        print(
            f"  frozen backbone, {frozen['epochs']:g} epochs: {frozen['seconds']['not_cached']:.1f} s, with the "
            f"feature cache {frozen['seconds']['cached']:.1f} s ({frozen['speedup']:.1f}x)"
        )
    if "accuracy" in report:
        for name, result in report["accuracy"].items():
            runs = ", ".join(f"{a:.3f} (loss {loss:.3f})" for a, loss in zip(result["accuracy"], result["loss"]))
            print(f"  eval accuracy {name:22s} {result['mean_accuracy']:.3f}: {runs}")
    print(f"  load average before/after: {report['load_before'][0]:.2f} / {report['load_after'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
