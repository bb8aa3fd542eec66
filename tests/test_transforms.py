import math
import random

import numpy as np
import pytest
import torch
from conftest import tiny_processor
from PIL import Image
from torchvision.transforms import InterpolationMode

from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.transforms import (
    CROP_RATIO,
    ERASE_SCALE,
    Plan,
    TrainAugment,
    build_batch_mix,
    build_train_transform,
    crop_box,
    erase_box,
    processor_geometry,
)

SIZE = 32


def augment(**overrides) -> TrainAugment:
    return build_train_transform(tiny_processor(SIZE), DataArguments(**overrides))


def plan(**fields) -> Plan:
    return Plan(**{"box": (0, 0, SIZE, SIZE), "flip": False, "erase": (0, 0, 0, 0), "aug_seed": 0, **fields})


def gradient_crop(height: int = 48, width: int = 64) -> torch.Tensor:
    """A uint8 (3, h, w) crop whose left and right halves differ, viewed from an HWC array as the loader makes it."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (200, 40, 10)
    array[:, width // 2 :] = (10, 90, 240)
    return torch.from_numpy(array).permute(2, 0, 1)


def test_processor_geometry_reads_crop_and_normalisation():
    geometry = processor_geometry(tiny_processor(SIZE))
    assert (geometry.height, geometry.width) == (SIZE, SIZE)
    assert geometry.mean == pytest.approx((0.485, 0.456, 0.406))
    assert geometry.interpolation == InterpolationMode.BICUBIC


@pytest.mark.parametrize("height, width", [(480, 640), (640, 480), (50, 1000)])
def test_crop_boxes_lie_inside_and_respect_scale_and_ratio(height, width):
    rng = random.Random(0)
    for _ in range(200):
        top, left, h, w = crop_box(rng, height, width, scale=(0.08, 1.0))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        if (h, w) != (height, width) and not (w == width or h == height):  # not torchvision's centred fallback
            assert 0.08 * 0.9 <= h * w / (height * width) <= 1.0
            assert CROP_RATIO[0] * 0.9 <= w / h <= CROP_RATIO[1] * 1.1


def test_crop_box_falls_back_to_the_centred_crop_torchvision_takes():
    # A 1:20 strip can never hold a 3:4..4:3 box of the whole area: torchvision then crops the centre at ratio 4:3.
    assert crop_box(random.Random(0), 50, 1000, scale=(1.0, 1.0)) == (0, 466, 50, 67)


def test_erase_box_is_off_at_p0_and_inside_at_p1():
    assert erase_box(random.Random(0), SIZE, SIZE, p=0.0) == (0, 0, 0, 0)
    rng = random.Random(1)
    for _ in range(100):
        top, left, h, w = erase_box(rng, 224, 224, p=1.0)
        assert top + h <= 224 and left + w <= 224
        assert ERASE_SCALE[0] * 0.8 <= h * w / 224**2 <= ERASE_SCALE[1] * 1.2


def test_plans_depend_on_the_seed_only():
    transform = augment(random_erasing=0.5)
    assert transform.plan(480, 640, seed=7) == transform.plan(480, 640, seed=7)
    plans = {transform.plan(480, 640, seed=seed) for seed in range(50)}
    assert len(plans) == 50
    assert 10 < sum(p.flip for p in plans) < 40  # hflip=0.5


def test_finish_normalises_and_resizes_in_nchw_on_a_cpu():
    transform = augment()
    batch = transform.finish([gradient_crop()], [plan()])
    assert batch.shape == (1, 3, SIZE, SIZE) and batch.dtype == torch.float32
    # Per-channel arithmetic is fastest over NCHW on a CPU; the training step lays the batch out for the model.
    assert batch.is_contiguous()
    mean, std = transform.geometry.mean, transform.geometry.std
    expected_left = [(value / 255 - m) / s for value, m, s in zip((200, 40, 10), mean, std)]
    torch.testing.assert_close(
        batch[0, :, :, 0], torch.tensor(expected_left)[:, None].expand(3, SIZE), atol=1e-5, rtol=0
    )


def test_flip_mirrors_exactly_and_erasing_zeroes_exactly_the_planned_patch():
    transform = augment(random_erasing=1.0)
    crops = [gradient_crop(), gradient_crop()]
    plain, flipped_erased = transform.finish(crops, [plan(), plan(flip=True, erase=(3, 5, 10, 7))]).unbind(0)
    expected = plain.flip(-1).clone()
    expected[:, 3:13, 5:12] = 0.0  # zero after normalisation is the dataset mean, as torchvision's value=0
    torch.testing.assert_close(flipped_erased, expected, rtol=0, atol=0)


def test_vflip_turns_images_upside_down_at_its_rate_and_leaves_the_other_draws_alone():
    transform, unflipped = augment(vflip=0.5), augment()
    plans = [transform.plan(480, 640, seed=seed) for seed in range(200)]
    assert 60 < sum(p.vflip for p in plans) < 140
    # Drawn after everything else: a run without it crops, flips, erases and augments exactly as before.
    assert [p.box for p in plans] == [unflipped.plan(480, 640, seed=seed).box for seed in range(200)]
    top_dark = gradient_crop().transpose(1, 2).contiguous()  # rows differ: the top half is one colour
    upright, upside_down = transform.finish([top_dark] * 2, [plan(), plan(vflip=True)]).unbind(0)
    torch.testing.assert_close(upside_down, upright.flip(-2), rtol=0, atol=0)


def test_vflip_declared_once_reaches_the_fingerprint_the_card_the_help_and_the_checks(tmp_path):
    from hf_resnet.config import run_folder
    from hf_resnet.config.arguments import ResNetTrainingArguments
    from hf_resnet.config.checks import ArgumentError, validate
    from hf_resnet.config.parsing import render_help
    from hf_resnet.flags import named
    from hf_resnet.model.arguments import ModelArguments

    data, training = DataArguments(vflip=0.25), ResNetTrainingArguments(output_dir=str(tmp_path / "out"))
    assert run_folder.fingerprint(ModelArguments(arch="resnet-18"), data, training)["vflip"] == 0.25
    assert "vflip" in named(DataArguments, card="augmentation") and "--vflip FLOAT" in render_help()
    with pytest.raises(ArgumentError, match=r"^--vflip 2\.0: must be in \[0, 1\]$"):
        validate(ModelArguments(arch="resnet-18"), DataArguments(vflip=2.0, train_dir=str(tmp_path)), training)


def test_auto_augment_is_fixed_by_the_plan_seed():
    transform = augment(auto_augment="trivial")
    crops = [gradient_crop()] * 2
    first = transform.finish(crops, [plan(aug_seed=1), plan(aug_seed=2)])
    again = transform.finish(crops, [plan(aug_seed=1), plan(aug_seed=2)])
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first[0], first[1])  # TrivialAugment draws another operation or magnitude


def test_transform_is_callable_on_pil_images_like_a_torchvision_transform():
    transform = augment()
    image = Image.fromarray(gradient_crop(40, 60).permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(0)
    assert first.shape == (3, SIZE, SIZE) and torch.equal(first, transform(image))


def test_batch_mix_keeps_label_mass_and_is_off_by_default():
    assert build_batch_mix(3, DataArguments()) is None
    mix = build_batch_mix(3, DataArguments(mixup_alpha=0.2, cutmix_alpha=1.0))
    pixels, labels = mix(torch.randn(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, 0]))
    assert labels.shape == (4, 3) and torch.allclose(labels.sum(1), torch.ones(4))
    assert math.isfinite(float(pixels.sum()))
