"""The family adapters one by one: which configs each takes, the parts it names, how it loads and preprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from PIL import Image
from test_timm import SIZE, save_timm_checkpoint
from torchvision.transforms import InterpolationMode
from transformers import ResNetForImageClassification

from hf_resnet.data.transforms import processor_geometry
from hf_resnet.families import PARTS, checkpoint_family, config_labels, families, family_of, known_family
from hf_resnet.families.resnet import FAMILY as RESNET
from hf_resnet.families.timm_resnet import FAMILY as TIMM_RESNET
from hf_resnet.model.freezing import freeze
from hf_resnet.model.loading import ModelLoadError, folder_problem
from hf_resnet.model.parts import named_parameters_by_part
from hf_resnet.training.frozen_features import SkipFrozen, compute_features


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> Path:
    return save_timm_checkpoint(tmp_path_factory.mktemp("timm") / "resnet10t")


@pytest.fixture(scope="module")
def timm_model(timm_folder):
    return TIMM_RESNET.load(str(timm_folder), ["ant", "bee", "cat"])


def test_every_module_of_the_package_is_a_family_found_by_itself():
    assert [family.name for family in families()] == ["transformers ResNet", "timm ResNet"]


def test_each_config_goes_to_its_family_and_others_are_refused_naming_the_supported_ones(timm_folder):
    hub_config = json.loads((timm_folder / "config.json").read_text())
    assert "model_type" not in hub_config  # as on the Hub: AutoConfig infers timm_wrapper from pretrained_cfg
    assert known_family(hub_config) is TIMM_RESNET and checkpoint_family(timm_folder) is TIMM_RESNET
    assert known_family(tiny_config()) is RESNET and known_family({"model_type": "resnet"}) is RESNET
    for config in (
        {"model_type": "bert"},
        {"model_type": "convnext"},
        {**hub_config, "architecture": "resnetv2_50"},  # timm, but another network class
        {**hub_config, "architecture": "vit_base_patch16_224"},
    ):
        assert known_family(config) is None
        with pytest.raises(ModelLoadError, match="hf_resnet fine-tunes transformers ResNet and timm ResNet"):
            family_of(config)


def test_every_parameter_of_a_timm_resnet_belongs_to_exactly_one_part(timm_model):
    groups = named_parameters_by_part(timm_model)
    assert set(groups) == set(PARTS) and all(groups[part] for part in PARTS)
    assert sum(len(named) for named in groups.values()) == len(list(timm_model.parameters()))
    assert [name for name, _ in groups["head"]] == ["timm_model.fc.weight", "timm_model.fc.bias"]
    assert all(name.startswith("timm_model.layer3.") for name, _ in groups["stage3"])
    assert {name.split(".")[1] for name, _ in groups["embedder"]} == {"conv1", "bn1"}
    with pytest.raises(ValueError, match="not part of a timm ResNet"):
        TIMM_RESNET.part_of("timm_model.head.fc.weight")


def test_a_timm_checkpoint_loads_with_a_fresh_head_for_the_new_labels(timm_folder, timm_model, tmp_path):
    import timm

    original = timm.create_model("resnet10t", num_classes=5)
    from safetensors.torch import load_file

    original.load_state_dict(load_file(str(timm_folder / "model.safetensors")))
    assert timm_model.config.id2label == {0: "ant", 1: "bee", 2: "cat"}
    assert timm_model.timm_model.fc.out_features == 3
    backbone = {k: v for k, v in timm_model.timm_model.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(value, original.state_dict()[key]) for key, value in backbone.items())
    timm_model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["label_names"] == ["ant", "bee", "cat"] and config_labels(saved) == ["ant", "bee", "cat"]
    assert folder_problem(tmp_path / "saved") is None  # no preprocessor_config.json: config.json holds it


def test_a_timm_head_of_the_same_classes_is_kept_and_of_other_classes_reset(timm_folder):
    from safetensors.torch import load_file

    head = load_file(str(timm_folder / "model.safetensors"))["fc.weight"]
    same = TIMM_RESNET.load(str(timm_folder), [f"LABEL_{i}" for i in range(5)])  # the names its config implies
    other = TIMM_RESNET.load(str(timm_folder), ["a", "b", "c", "d", "e"])
    assert torch.equal(same.timm_model.fc.weight, head) and not torch.equal(other.timm_model.fc.weight, head)


def test_the_timm_processor_is_read_for_training_and_resized_in_the_saved_config(timm_folder):
    model = TIMM_RESNET.load(str(timm_folder), ["a", "b"])
    processor = TIMM_RESNET.image_processor(str(timm_folder), model)
    geometry = processor_geometry(processor)
    assert (geometry.height, geometry.width, geometry.interpolation) == (SIZE, SIZE, InterpolationMode.BICUBIC)
    assert geometry.mean == (0.485, 0.456, 0.406) and geometry.std == (0.229, 0.224, 0.225)
    pixels = processor(Image.new("RGB", (50, 40), (255, 0, 0)), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, SIZE, SIZE)
    assert pixels[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)  # its mean and std

    resized = TIMM_RESNET.image_processor(str(timm_folder), model, image_size=48)
    assert processor_geometry(resized).height == 48
    assert model.config.pretrained_cfg["input_size"] == [3, 48, 48]  # saved with the model, read by the pipeline


def test_freezing_a_timm_resnet_holds_its_batchnorm_statistics(timm_model):
    freeze(timm_model, ["embedder", "stage1"])
    stem, stage4 = timm_model.timm_model.bn1, timm_model.timm_model.layer4[0].bn1
    before_stem, before_stage4 = stem.running_mean.clone(), stage4.running_mean.clone()
    timm_model.train()(pixel_values=torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(stem.running_mean, before_stem) and not torch.equal(stage4.running_mean, before_stage4)
    assert not any(p.requires_grad for p in timm_model.timm_model.layer1.parameters())


@pytest.mark.parametrize("family", [RESNET, TIMM_RESNET])
def test_cached_features_of_the_whole_backbone_give_the_full_model_logits(family, timm_model):
    model = (ResNetForImageClassification(tiny_config()) if family is RESNET else timm_model).eval()
    freeze(model, list(PARTS[:-1]))  # as a run caches: the whole backbone frozen, its BatchNorm layers held in eval
    images = torch.utils.data.TensorDataset(torch.randn(3, 3, 32, 32))
    rows = [{"pixel_values": image} for (image,) in images]
    features = compute_features(model, rows, parts=5).float()
    with torch.no_grad():
        expected = model(pixel_values=torch.stack([row["pixel_values"] for row in rows])).logits
        skip = SkipFrozen(model, parts=5)
        from_cache = model.train()(pixel_values=features).logits
        skip.remove()
    model.eval()
    torch.testing.assert_close(from_cache, expected, rtol=1e-3, atol=1e-3)  # float16 cache


def test_the_card_names_what_the_network_is():
    assert RESNET.describe(tiny_config()) == "ResNet"
    assert TIMM_RESNET.describe({"model_type": "timm_wrapper", "architecture": "resnet50"}) == "timm ResNet (resnet50)"
