"""The decoded-image cache, the prefetch thread and the data path's choices."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_processor
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
    written = (first.path / "pixels.npy").stat().st_mtime_ns
    again = image_cache.build(photos, geometry, "disk")
    assert again.path == first.path and (again.path / "pixels.npy").stat().st_mtime_ns == written
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
        monkeypatch.setattr(image_cache, "_free_disk", lambda folder: disk)
        return image_cache.decide_mode(None, photos, geometry)[0]

    assert machine(memory=8 * size, disk=8 * size) == "disk"
    assert machine(memory=8 * size, disk=2 * size) == "memory"  # too little disk: one copy in memory
    assert machine(memory=2 * size, disk=8 * size) == "off"  # pages read at random must stay in memory
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
