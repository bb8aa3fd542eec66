import io

import numpy as np
import pytest
import torch
from conftest import make_image_folder, tiny_config, tiny_processor
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

import hf_resnet
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.device_batch import CropBatch, decode_jpegs
from hf_resnet.data.image_datasets import (
    TrainImages,
    collate,
    decode_crop,
    gpu_decodable,
    sample_seed,
    train_stage,
)
from hf_resnet.data.images import ImageError, open_image
from hf_resnet.data.transforms import build_train_transform
from hf_resnet.runtime.launcher import cores_per_process, decide_data_overlap
from hf_resnet.training.callbacks import EpochSetter

SIZE = 32
FAST = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, report_to="none", disable_tqdm=True)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients plus a few blobs): JPEG-friendly and with detail at every scale."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(x * rng.uniform(3, 9) + rng.uniform(0, 6)) + np.cos(y * rng.uniform(3, 9)) for _ in range(3)]
    array = (np.stack(channels, axis=-1) + 2) * 63
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **save)
    return buffer.getvalue()


@pytest.fixture
def jpeg_dataset(tmp_path) -> Dataset:
    paths = []
    for i in range(12):
        path = tmp_path / f"photo_{i}.jpg"
        path.write_bytes(jpeg_bytes(photo(200 + 20 * i, 150 + 10 * i, seed=i)))
        paths.append(str(path))
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"image": paths, "label": [i % 3 for i in range(12)]}, features=features)


def augment(**overrides):
    return build_train_transform(tiny_processor(SIZE), DataArguments(**overrides))


def test_sample_seeds_differ_between_neighbours():
    seeds = {sample_seed(0, epoch, index) for epoch in range(3) for index in range(100)}
    assert len(seeds) == 300 and all(0 <= seed < 2**63 for seed in seeds)


def test_augmentation_depends_on_seed_epoch_and_index_only(jpeg_dataset):
    images = TrainImages(jpeg_dataset, augment(random_erasing=0.5), seed=3)
    first = [images[i]["pixel_values"] for i in (0, 5)]
    assert all(torch.equal(a, images[i]["pixel_values"]) for a, i in zip(first, (0, 5)))
    images.set_epoch(1)
    assert not torch.equal(first[0], images[0]["pixel_values"])


def test_worker_count_does_not_change_the_batches(jpeg_dataset):
    images = TrainImages(jpeg_dataset, augment(), seed=0)
    loaders = [torch.utils.data.DataLoader(images, batch_size=4, num_workers=n, collate_fn=collate) for n in (0, 2)]
    for serial, parallel in zip(*loaders):
        assert torch.equal(serial["pixel_values"], parallel["pixel_values"])
        assert serial["mix_seed"] == parallel["mix_seed"] and isinstance(serial["mix_seed"], int)


def test_large_jpegs_are_decoded_at_reduced_size_close_to_a_full_decode():
    data = jpeg_bytes(photo(1024, 768))
    transform = augment(crop_scale_min=1.0)  # the whole image (at a 3:4..4:3 ratio) to 32 px: an 8x reduction
    crop, plan = decode_crop(data, transform, seed=0)
    assert plan.box == (0, 0, 768, 1024) and tuple(crop.shape) == (3, 768 // 8, 1024 // 8)  # libjpeg's largest step
    smaller, _ = decode_crop(jpeg_bytes(photo(256, 192)), transform, seed=0)
    assert SIZE <= min(smaller.shape[1:]) < 2 * SIZE  # 1/4: the largest step that keeps the output resolution
    full = np.asarray(open_image(data))
    top, left, height, width = plan.box
    reference = torch.from_numpy(np.array(full[top : top + height, left : left + width])).permute(2, 0, 1)
    reduced = transform.finish([crop], [plan])
    exact = transform.finish([reference], [plan])
    assert (reduced - exact).abs().mean() < 0.05  # normalised units: about 3 grey levels out of 255


def test_exif_rotated_jpegs_are_cropped_upright(tmp_path):
    stored = photo(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "turned.jpg"
    path.write_bytes(jpeg_bytes(stored, exif=exif))
    upright = np.asarray(open_image(path))
    assert upright.shape == (60, 40, 3)
    crop, plan = decode_crop(str(path), augment(crop_scale_min=1.0), seed=0)
    top, left, height, width = plan.box
    assert plan.box[2:] != (40, 60)  # planned on the upright image
    assert np.array_equal(crop.permute(1, 2, 0).numpy(), upright[top : top + height, left : left + width])


def test_decoding_errors_name_the_file(tmp_path):
    bad = tmp_path / "half.jpg"
    bad.write_bytes(jpeg_bytes(photo(200, 150))[:300])
    with pytest.raises(ImageError, match=r"half\.jpg: truncated or corrupt"):
        decode_crop(str(bad), augment(), seed=0)
    with pytest.raises(ImageError, match=r"gone\.jpg: no such file"):
        decode_crop(str(tmp_path / "gone.jpg"), augment(), seed=0)


def test_only_plain_upright_jpegs_go_to_the_gpu_decoder():
    assert gpu_decodable(jpeg_bytes(photo(64, 48))) == (48, 64)
    assert gpu_decodable(jpeg_bytes(photo(64, 48).convert("L"))) == (48, 64)
    assert gpu_decodable(jpeg_bytes(photo(64, 48).convert("CMYK"))) is None
    exif = Image.Exif()
    exif[0x0112] = 8
    assert gpu_decodable(jpeg_bytes(photo(64, 48), exif=exif)) is None
    png = io.BytesIO()
    photo(64, 48).save(png, format="PNG")
    assert gpu_decodable(png.getvalue()) is None


def test_device_stage_gives_the_pixels_of_the_worker_stage(jpeg_dataset):
    transform = augment(auto_augment="trivial", random_erasing=0.5)
    in_workers = TrainImages(jpeg_dataset, transform, seed=1, stage="pixels")
    crops = TrainImages(jpeg_dataset, transform, seed=1, stage="crops")
    finished_in_workers = collate([in_workers[i] for i in range(8)])
    batch = collate([crops[i] for i in range(8)]).copy()
    assert batch["crops"].pixels.dtype == torch.uint8 and len(batch["crops"]) == 8
    moved = batch["crops"].to(torch.device("cpu"), non_blocking=True)
    torch.testing.assert_close(moved.finish(), finished_in_workers["pixel_values"], rtol=0, atol=0)


def test_jpeg_stage_decodes_with_torchvision_and_matches_the_cpu_decode(jpeg_dataset):
    transform = augment()
    in_workers = collate([TrainImages(jpeg_dataset, transform, seed=2)[i] for i in range(6)])
    jpegs = collate([TrainImages(jpeg_dataset, transform, seed=2, stage="jpeg")[i] for i in range(6)])
    assert all(data is not None for data in jpegs["crops"].jpegs)
    # Full-size decode (no DCT scaling) by torchvision's libjpeg: the same crop, a grey level or two apart.
    assert (jpegs["crops"].finish() - in_workers["pixel_values"]).abs().mean() < 0.05


def test_corrupt_jpeg_in_a_gpu_batch_is_named():
    good = jpeg_bytes(photo(64, 48))
    with pytest.raises(ImageError, match="broken.jpg: corrupt JPEG"):
        decode_jpegs([good, good[:200]], torch.device("cpu"), ["fine.jpg", "broken.jpg"])


def test_crop_batches_unpack_to_the_crops_packed():
    crops = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8).permute(2, 0, 1) for h, w in ((5, 7), (9, 4))]
    plan = augment().plan(10, 10, seed=0)
    examples = [{"crop": c, "plan": plan, "name": f"{i}", "augment": augment()} for i, c in enumerate(crops)]
    unpacked = CropBatch.collate(examples).crops()
    assert all(torch.equal(a, b) for a, b in zip(unpacked, crops))


def test_stage_follows_the_device_and_flags():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train_stage("auto", False, cpu) == "pixels"
    assert train_stage("auto", False, cuda) == "crops"
    assert train_stage("device", False, cpu) == "crops"
    assert train_stage("workers", False, cuda) == "pixels"
    assert train_stage("auto", True, cuda) == "jpeg"
    with pytest.raises(ValueError, match="--gpu_decode needs a CUDA device"):
        train_stage("auto", True, cpu)


def test_default_workers_leave_a_core_for_the_training_loop(monkeypatch):
    def default(gpu: bool = False):
        return decide_data_overlap("auto", None, cores_per_process(), gpu)[:2]

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert default() == ("workers", 7)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default() == ("workers", 3)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert default() == ("none", 0)  # two cores, no GPU: the model needs both, batches are made between steps
    assert default(gpu=True) == ("workers", 1)  # with a GPU, the cores are free for decoding


def test_epoch_setter_reaches_persistent_workers(jpeg_dataset):
    images = TrainImages(jpeg_dataset, augment(), seed=0)
    loader = torch.utils.data.DataLoader(
        images, batch_size=12, num_workers=1, persistent_workers=True, collate_fn=collate
    )
    first = next(iter(loader))["pixel_values"]
    EpochSetter(images).on_epoch_begin(None, type("State", (), {"epoch": 1.0})(), None)
    second = next(iter(loader))["pixel_values"]
    images.set_epoch(0)
    assert not torch.equal(first, second) and torch.equal(first, next(iter(loader))["pixel_values"])


def test_training_on_the_device_path_gives_the_same_model(tmp_path):
    train, val = make_image_folder(tmp_path / "train", per_class=8), make_image_folder(tmp_path / "val", per_class=2)
    models = {}
    for place in ("workers", "device"):
        result = hf_resnet.finetune(
            config=tiny_config(embedding_size=16, hidden_sizes=[16, 16, 24, 32]),  # wide enough for channels-last
            train_dir=str(train),
            validation_dir=str(val),
            output_dir=str(tmp_path / place),
            augment_on=place,
            image_size=SIZE,
            num_train_epochs=1,
            save_strategy="no",
            **FAST,
        )
        models[place] = result.model
    conv = models["device"].resnet.embedder.embedder.convolution.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)  # the default layout for training
    for (name, a), b in zip(models["workers"].state_dict().items(), models["device"].state_dict().values()):
        assert torch.equal(a, b), name
