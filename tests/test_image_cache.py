"""The decoded-image cache, the prefetch thread and the data path's choices."""

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_PYTHONPATH, tiny_processor
from datasets import Dataset
from PIL import Image
from safetensors.torch import load_file
from test_loading import jpeg_bytes, jpeg_dataset, photo  # noqa: F401 (photo-like images: a wrong crop shows)

import hf_resnet
from hf_resnet.data import image_cache
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.image_datasets import TrainImages
from hf_resnet.data.images import ImageError
from hf_resnet.data.prefetch import ThreadPrefetch
from hf_resnet.data.transforms import build_train_transform, processor_geometry
from hf_resnet.runtime.launcher import decide_data_overlap

SIZE = 32


@pytest.fixture
def photos(jpeg_dataset, tmp_path) -> Dataset:  # noqa: F811 (the fixture, imported)
    """Twelve JPEGs of 150-420 px, five to thirteen times the model's 32 px, and one stored sideways."""
    sideways = tmp_path / "sideways.jpg"  # upright by its EXIF tag
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.write_bytes(jpeg_bytes(photo(200, 130, seed=99), exif=exif.tobytes()))
    return jpeg_dataset.add_item({"image": str(sideways), "label": 0})


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_RESNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


def augment():
    return build_train_transform(tiny_processor(SIZE), DataArguments())


def samples(dataset: Dataset, cache, epochs: int = 4) -> tuple[list, torch.Tensor]:
    images = TrainImages(dataset, augment(), seed=0, stage="crops", cache=cache)
    plans, pixels = [], []
    for epoch in range(epochs):
        images.set_epoch(epoch)
        for index in range(len(images)):
            sample = images[index]
            plans.append(sample["plan"])
            pixels.append(sample["augment"].finish([sample["crop"]], [sample["plan"]])[0])
    return plans, torch.stack(pixels)


def test_cached_samples_have_the_same_crops_and_flips_and_the_same_pixel_statistics(photos):
    geometry = processor_geometry(tiny_processor(SIZE))
    cache = image_cache.build(photos, geometry, "memory")
    assert cache.index[:, 1:3].min() == 37  # the shortest side at 1.15x the model's 32 px
    assert tuple(cache.index[-1, 3:]) == (200, 130)  # the sideways photo's upright height and width
    plans, decoded = samples(photos, None)
    cached_plans, cached = samples(photos, cache)
    # Every random draw comes from the sample's seed and the original image size: the same boxes, flips, erasures.
    assert cached_plans == plans
    area = np.array([plan.box[2] * plan.box[3] for plan in plans], dtype=float)
    assert area.std() > 0 and np.mean([plan.flip for plan in plans]) not in (0.0, 1.0)  # the draws do vary
    # Each cached sample shows the same region, flipped the same way: paired samples agree closely...
    flat, cached_flat = decoded.flatten(1), cached.flatten(1)
    correlation = torch.nn.functional.cosine_similarity(
        flat - flat.mean(1, True), cached_flat - cached_flat.mean(1, True)
    )
    assert correlation.median() > 0.95 and correlation.min() > 0.8
    # ...and over all samples the pixel statistics match: per-channel mean and spread, and the spread of sample means.
    assert torch.allclose(cached.mean(dim=(0, 2, 3)), decoded.mean(dim=(0, 2, 3)), atol=0.03)
    assert torch.allclose(cached.std(dim=(0, 2, 3)), decoded.std(dim=(0, 2, 3)), rtol=0.05)
    assert torch.allclose(cached.mean(dim=(2, 3)).std(0), decoded.mean(dim=(2, 3)).std(0), rtol=0.1)


def test_a_disk_cache_is_reused_for_the_same_images_and_size_and_made_anew_for_others(photos, cache_folder, tmp_path):
    geometry = processor_geometry(tiny_processor(SIZE))
    first = image_cache.build(photos, geometry, "disk")
    assert first.path.parent == cache_folder and not list(cache_folder.glob("*.partial"))
    written = (first.path / "pixels.bin").stat().st_mtime_ns
    again = image_cache.build(photos, geometry, "disk")
    assert again.path == first.path and (again.path / "pixels.bin").stat().st_mtime_ns == written
    assert np.array_equal(again.image(3), first.image(3))
    larger = image_cache.build(photos, processor_geometry(tiny_processor(48)), "disk")
    assert larger.path != first.path  # keyed by the processor's output size
    changed = tmp_path / "photo_0.jpg"
    changed.write_bytes(jpeg_bytes(photo(200, 150, seed=50)))
    assert image_cache.build(photos, geometry, "disk").path not in (first.path, larger.path)  # and by the bytes


def test_an_unreadable_image_is_named_when_the_cache_is_built(photos, tmp_path):
    broken = tmp_path / "photo_4.jpg"
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.raises(ImageError, match="photo_4.jpg: truncated or corrupt image"):
        image_cache.build(photos, processor_geometry(tiny_processor(SIZE)), "memory")


def test_the_default_cache_is_the_one_the_decoded_copy_fits(photos, cache_folder, monkeypatch):
    geometry = processor_geometry(tiny_processor(SIZE))
    size = image_cache.estimated_bytes(photos, geometry)
    built = image_cache.build(photos, geometry, "memory")
    assert size == built.pixels.nbytes  # read from the headers alone, exactly (every image was in the sample)

    def machine(memory: int, disk: int):
        monkeypatch.setattr("psutil.virtual_memory", lambda: type("Memory", (), {"available": memory})())
        monkeypatch.setattr(image_cache, "_free_disk", lambda: disk)
        return image_cache.decide_mode(None, photos, geometry)[0]

    monkeypatch.setattr(image_cache.cache_store, "SPARE_BYTES", 4 * size)
    assert machine(memory=8 * size, disk=8 * size) == "disk"
    assert machine(memory=8 * size, disk=2 * size) == "memory"  # too little disk: one copy in memory
    assert machine(memory=2 * size, disk=8 * size) == "off"  # pages read at random must stay in memory
    monkeypatch.setattr(image_cache.cache_store, "SPARE_BYTES", 8 * size)
    assert machine(memory=8 * size, disk=8 * size) == "memory"  # the disk's spare room comes first, as in the build
    assert image_cache.decide_mode("off", photos, geometry) == ("off", "--image_cache off")


def test_prefetched_batches_come_in_order_and_a_failure_surfaces_where_they_are_used():
    assert list(ThreadPrefetch(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise ImageError("photos/bad.jpg", "truncated or corrupt image")

    prefetch = ThreadPrefetch(failing())
    assert next(prefetch) == 1
    with pytest.raises(ImageError, match="photos/bad.jpg"):
        next(prefetch)
    endless = ThreadPrefetch(iter(int, 1))  # never exhausted: a run stopped early closes it
    next(endless)
    endless.close()
    assert not endless._thread.is_alive()


def test_the_data_overlap_is_what_the_user_set_else_what_the_machine_kind_runs_fastest():
    assert decide_data_overlap("auto", None, cores=2, gpu=False)[:2] == ("none", 0)
    assert decide_data_overlap("auto", None, cores=1, gpu=False)[:2] == ("none", 0)
    assert decide_data_overlap("auto", None, cores=2, gpu=True)[0] == "workers"
    assert decide_data_overlap("auto", 3, cores=2, gpu=False) == ("workers", 3, "--dataloader_num_workers 3")
    assert decide_data_overlap("auto", 0, cores=8, gpu=False)[:2] == ("none", 0)
    overlap, workers, why = decide_data_overlap("workers", None, cores=2, gpu=False)
    assert (overlap, why) == ("workers", "--data_overlap workers") and workers >= 1
    assert decide_data_overlap("none", None, cores=8, gpu=True)[:2] == ("none", 0)


def test_batches_made_in_a_prefetch_thread_train_the_same_weights_as_batches_made_between_steps(
    tiny_checkpoint, image_folders, tmp_path
):
    """Auto-augment and mixing draw from torch's one global generator; the thread must not change a draw."""
    train, val = image_folders
    weights = {}
    for overlap in ("thread", "none"):
        result = hf_resnet.finetune(
            model_name_or_path=str(tiny_checkpoint),
            train_dir=str(train),
            validation_dir=str(val),
            output_dir=str(tmp_path / overlap),
            data_overlap=overlap,
            num_train_epochs=2,
            auto_augment="rand",
            mixup_alpha=0.4,
            per_device_train_batch_size=8,
            report_to="none",
            disable_tqdm=True,
        )
        recipe = json.loads((result.output_dir / "recipe.json").read_text())
        assert recipe["recipe"]["data_path"]["data_overlap"]["mode"] == overlap
        weights[overlap] = load_file(str(tmp_path / overlap / "model.safetensors"))
    assert weights["thread"].keys() == weights["none"].keys()
    for name, tensor in weights["thread"].items():
        assert torch.equal(tensor, weights["none"][name]), name


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB file system of its own (tmpfs), so a full disk is real; skipped where mounting is not permitted."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(
            f"a full disk needs a small tmpfs, and mount is not permitted here: {mounted.stderr.decode()[:200]}"
        )
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def published(cache_folder) -> list[str]:
    return sorted(path.name for path in cache_folder.iterdir()) if cache_folder.is_dir() else []


def test_a_damaged_disk_cache_is_rebuilt_with_one_warning_and_never_trusted(photos, cache_folder, caplog):
    geometry = processor_geometry(tiny_processor(SIZE))
    first = image_cache.build(photos, geometry, "disk")
    expected, folder = np.array(first.pixels), first.path
    del first  # its memory map would read the damaged file
    pixels, manifest = folder / "pixels.bin", folder / "manifest.json"
    damages = {
        "truncated": lambda: pixels.write_bytes(pixels.read_bytes()[: pixels.stat().st_size // 2]),
        "zeroed": lambda: pixels.write_bytes(bytes(pixels.stat().st_size)),  # the same size: only a checksum shows it
        "garbage manifest": lambda: manifest.write_bytes(b"\x00garbage"),
        "no manifest": manifest.unlink,
    }
    for name, damage in damages.items():
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hf_resnet"):
            again = image_cache.build(photos, geometry, "disk")
        warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "failed its check" in warnings[0] and "building it again" in warnings[0], name
        assert again.path == folder and np.array_equal(np.array(again.pixels), expected), name
        assert published(cache_folder) == [folder.name], name  # rebuilt in place, no partial folder left
        del again
    caplog.clear()
    assert image_cache.build(photos, geometry, "disk").path == folder
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]  # whole again: reused


def test_a_full_disk_under_the_cache_ends_in_one_line_or_falls_back_and_leaves_nothing(
    photos, small_disk, monkeypatch, caplog
):
    monkeypatch.setenv("HF_RESNET_CACHE", str(small_disk))
    geometry = processor_geometry(tiny_processor(SIZE))
    choice = {"mode": "disk", "why": "--image_cache disk"}
    # Checked first: the cache and its spare room do not fit in 1 MB, so nothing is decoded or written.
    with pytest.raises(
        image_cache.CacheError, match=r"^--image_cache disk: too little disk free in \$HF_RESNET_CACHE"
    ):
        image_cache.prepare(photos, geometry, choice, asked=True)
    assert published(small_disk / "images") == []
    # The disk fills while the cache is written (another process took the space after the check).
    monkeypatch.setattr(image_cache.cache_store, "SPARE_BYTES", 0)
    filler = small_disk / "filler"
    with filler.open("wb") as file:  # all but 24 kB taken: a few images' pixels fit, not all of them
        file.write(bytes(2**20 - 24 * 2**10 - shutil.disk_usage(small_disk).used))
    monkeypatch.setattr(image_cache.cache_store, "free_bytes", lambda: 2**20)
    with pytest.raises(image_cache.CacheError, match="filled up while the cache was written; free space") as error:
        image_cache.prepare(photos, geometry, choice, asked=True)
    assert "\n" not in str(error.value) and not error.value.usage
    assert published(small_disk / "images") == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        cache, outcome = image_cache.prepare(photos, geometry, {"mode": "disk", "why": "fits"}, asked=False)
    assert cache is None and outcome["mode"] == "off" and str(small_disk) not in outcome["why"]
    assert [record.getMessage() for record in caplog.records] == [
        "Image cache: the disk of $HF_RESNET_CACHE/images filled up while the cache was written; training without one"
    ]
    assert published(small_disk / "images") == []


def test_an_unusable_cache_folder_is_one_line_when_asked_for_and_a_warning_otherwise(
    photos, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("HF_RESNET_CACHE", "")  # empty is unset, not the working folder
    assert image_cache.cache_root() == Path.home() / ".cache" / "hf_resnet" / "images"
    geometry = processor_geometry(tiny_processor(SIZE))
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("")
    monkeypatch.setenv("HF_RESNET_CACHE", str(not_a_folder))
    with pytest.raises(image_cache.CacheError, match=f"HF_RESNET_CACHE {not_a_folder} is a file") as error:
        image_cache.decide_mode("disk", photos, geometry)
    assert error.value.usage
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        mode, why = image_cache.decide_mode(None, photos, geometry)
    assert mode != "disk" and str(tmp_path) not in why and "cannot be written" in why
    assert len(caplog.records) == 1 and "is a file, not a folder" in caplog.records[0].getMessage()
    # A folder that cannot be written (root writes through permissions, so a read-only file system).
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(read_only)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a read-only folder needs a read-only mount, not permitted here: {mounted.stderr.decode()[:200]}")
    try:
        monkeypatch.setenv("HF_RESNET_CACHE", str(read_only))
        with pytest.raises(image_cache.CacheError, match="cannot be written \\(no write access"):
            image_cache.decide_mode("disk", photos, geometry)
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=True)


def test_partial_folders_of_dead_processes_are_removed_and_those_of_live_ones_kept(photos, cache_folder, capsys):
    from hf_resnet.data import cache_store
    from hf_resnet.data.cli import register

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, live = int(ended.stdout), os.getppid()
    host = cache_store.staging_name("").split(".")[2]
    partials = {pid: f"{'0123456789abcdef' * 2}.{pid}.{host}.partial" for pid in (dead, live)}
    cache_folder.mkdir(parents=True)
    for name in partials.values():
        (cache_folder / name).mkdir()
        (cache_folder / name / "pixels.bin").write_bytes(bytes(1000))
    (cache_folder / "notes.txt").write_text("mine")  # not ours: never listed nor removed
    built = image_cache.build(photos, processor_geometry(tiny_processor(SIZE)), "disk")
    assert published(cache_folder) == sorted([built.path.name, partials[live], "notes.txt"])

    parser = argparse.ArgumentParser(prog="hf-resnet")
    register(parser.add_subparsers(required=True))
    run = parser.parse_args(["cache", "list", "--verify"])
    assert run.func(run) == 0
    *listed, total = capsys.readouterr().out.splitlines()
    assert sorted(listed) == sorted(
        [
            f"{built.path.name}  0.1 MB, {len(photos)} images  ok",
            f"{partials[live]}  0.0 MB  being written by process {live}",
        ]
    )
    assert total.startswith("2 image cache(s) in ")
    run = parser.parse_args(["cache", "clear"])
    assert run.func(run) == 0
    assert published(cache_folder) == sorted([partials[live], "notes.txt"])
    assert "Removed 1 image cache(s)" in capsys.readouterr().out


#: A training run whose image decoding is slowed down, so a signal surely lands while the disk cache is written.
SLOW_BUILD = """
import sys, time
from hf_resnet.data import image_cache
decode = image_cache._decode_into
def slow(*args):
    print("DECODING", flush=True)
    time.sleep(0.2)
    decode(*args)
image_cache._decode_into = slow
from hf_resnet.training.cli import run_train
sys.exit(run_train(sys.argv[1:]))
"""


def test_ctrl_c_while_the_cache_is_built_stops_the_run_in_one_line_and_leaves_nothing(
    tiny_checkpoint, image_folders, tmp_path
):
    signal_name = "SIGINT"
    train, val = image_folders
    out, cache = tmp_path / "out", tmp_path / "cache"
    flags = ["--model_name_or_path", str(tiny_checkpoint), "--train_dir", str(train), "--validation_dir", str(val)]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, *flags, "--output_dir", str(out), "--image_cache", "disk"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH, "HF_RESNET_CACHE": str(cache)},
    )
    for line in process.stdout:
        if line.startswith("DECODING"):
            break
    assert [path.suffix for path in (cache / "images").iterdir()] == [".partial"]
    process.send_signal(getattr(signal, signal_name))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (f"hf-resnet train: stopped by {signal_name} before training started")
    assert "Traceback" not in stderr + stdout
    assert not (cache / "images").exists() and not out.exists()  # made by this build, so removed with it


def test_sigterm_while_the_cache_is_built_raises_the_stop_and_removes_the_partial_folder(
    photos, cache_folder, monkeypatch
):
    from hf_resnet.runtime.signals import StopRequested, stop_at_once

    decode, started = image_cache._decode_into, threading.Event()

    def slow(*args):
        started.set()
        time.sleep(0.2)
        decode(*args)

    monkeypatch.setattr(image_cache, "_decode_into", slow)
    sender = threading.Thread(target=lambda: started.wait(30) and os.kill(os.getpid(), signal.SIGTERM))
    sender.start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StopRequested, match="SIGTERM"), stop_at_once():
        image_cache.build(photos, processor_geometry(tiny_processor(SIZE)), "disk")
    sender.join()
    assert started.is_set() and published(cache_folder) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers from before the run are back


def test_train_with_a_disk_cache_in_a_file_is_one_line_and_exit_2(tiny_checkpoint, image_folders, tmp_path, capsys):
    from hf_resnet.training.recipe import main as train

    train_dir, val = image_folders
    not_a_folder = tmp_path / "cache_file"
    not_a_folder.write_text("")
    os.environ["HF_RESNET_CACHE"], previous = str(not_a_folder), os.environ["HF_RESNET_CACHE"]
    try:
        code = train(
            [
                *("--model_name_or_path", str(tiny_checkpoint), "--train_dir", str(train_dir)),
                *("--validation_dir", str(val), "--output_dir", str(tmp_path / "out"), "--image_cache", "disk"),
            ]
        )
    finally:
        os.environ["HF_RESNET_CACHE"] = previous
    assert code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"hf-resnet train: error: --image_cache disk: HF_RESNET_CACHE {not_a_folder} is a file, not a folder; "
        "set HF_RESNET_CACHE to a writable folder"
    )


def test_ctrl_c_while_the_images_are_checked_stops_at_once_not_after_the_whole_scan(image_folders, monkeypatch):
    from hf_resnet.data import sources
    from hf_resnet.runtime.signals import StopRequested, stop_at_once

    train, val = image_folders
    opened_images, real_open = [], sources.open_image

    def slow_open(*args, **kwargs):
        opened_images.append(args)
        time.sleep(0.2)  # 72 images on 4 threads: 3.6 s for the whole scan
        return real_open(*args, **kwargs)

    monkeypatch.setattr(sources, "open_image", slow_open)
    sent = {}

    def interrupt():
        while not opened_images:
            time.sleep(0.01)
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    with pytest.raises(StopRequested, match="SIGINT"), stop_at_once():
        sources.load_image_data(DataArguments(train_dir=str(train), validation_dir=str(val)))
    stopped_after = time.monotonic() - sent["at"]
    sender.join()
    assert stopped_after < 1.5 and len(opened_images) < 40, (stopped_after, len(opened_images))
