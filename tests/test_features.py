import pytest
import torch
from conftest import make_image_folder, tiny_processor
from safetensors.torch import load_file
from transformers import ResNetForImageClassification, TrainerCallback

import hf_resnet
from hf_resnet.data.image_datasets import EvalImages
from hf_resnet.data.sources import load_image_data
from hf_resnet.data.transforms import build_eval_transform
from hf_resnet.families.resnet import FAMILY as RESNET
from hf_resnet.model.arguments import BACKBONE_PARTS
from hf_resnet.training.frozen_features import FeatureImages, SkipFrozen, cached_parts, compute_features

FAST = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, report_to="none", disable_tqdm=True)
ALL_FROZEN = ",".join(BACKBONE_PARTS)


@pytest.fixture
def folders(tmp_path):
    return make_image_folder(tmp_path / "train", per_class=8, seed=1), make_image_folder(tmp_path / "val", per_class=4)


def eval_images(folder):
    data = load_image_data(hf_resnet.DataArguments(train_dir=str(folder), validation_split=0.25), seed=0)
    return EvalImages(data.train, build_eval_transform(tiny_processor())), data.train


def test_only_a_frozen_front_can_be_cached():
    assert cached_parts(list(BACKBONE_PARTS)) == 5
    assert cached_parts(["embedder", "stage1", "stage2", "stage3"]) == 4
    assert cached_parts(["stage1", "stage2", "stage3", "stage4"]) == 0  # the embedder still trains


@pytest.mark.parametrize("parts", [4, 5])
def test_trained_part_on_cached_features_gives_the_full_networks_logits(tiny_checkpoint, folders, parts):
    model = ResNetForImageClassification.from_pretrained(tiny_checkpoint).eval()
    images, split = eval_images(folders[0])
    features = compute_features(model, images, parts=parts, batch_size=8)
    assert len(features) == len(split) and features.dtype == torch.float16
    if parts == 5:
        assert tuple(features.shape[1:]) == (model.config.hidden_sizes[-1], 1, 1)  # pooled: a vector per image
    pixels = torch.stack([images[i]["pixel_values"] for i in range(4)])
    with torch.no_grad():
        full = model(pixel_values=pixels).logits
        skip = SkipFrozen(model, parts)
        model.train()
        for module in model.modules():  # the trained part's BatchNorm in eval mode, to compare like with like
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        cached = model(pixel_values=FeatureImages(features, split["label"])[0]["pixel_values"][None]).logits
        model.eval()
        torch.testing.assert_close(cached[0], full[0], rtol=0, atol=2e-3)  # float16 features
        skip.remove()
        model.train()
        with pytest.raises(ValueError, match="channel dimension"):  # the embedder runs again on any input
            model(pixel_values=features[:1].float())


def test_finetune_on_cached_features_moves_only_the_head(tiny_checkpoint, folders, tmp_path):
    stem_images = []
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(folders[0]),
        validation_dir=str(folders[1]),
        output_dir=str(tmp_path / "probe"),
        freeze=ALL_FROZEN,
        cache_frozen_features=True,
        num_train_epochs=3,
        learning_rate=5e-2,
        save_strategy="no",
        eval_strategy="no",
        callbacks=[_CountStem(stem_images)],
        **FAST,
    )
    before = load_file(str(tiny_checkpoint / "model.safetensors"))
    after = load_file(str(result.output_dir / "model.safetensors"))
    for name, tensor in after.items():
        moved = not torch.equal(tensor, before[name])
        assert moved == (RESNET.part_of(name) == "head"), name
    # After the cache was built, the frozen front never ran in 3 epochs of training: only for the 12 validation images.
    assert sum(stem_images) == 12
    assert result.metrics["eval_accuracy"] > 1 / 3


def test_caching_needs_a_frozen_backbone(tiny_checkpoint, folders, tmp_path):
    with pytest.raises(ValueError, match="needs the backbone frozen through stage3"):
        hf_resnet.finetune(
            model_name_or_path=str(tiny_checkpoint),
            train_dir=str(folders[0]),
            validation_dir=str(folders[1]),
            output_dir=str(tmp_path / "no"),
            cache_frozen_features=True,
            **FAST,
        )


class _CountStem(TrainerCallback):
    """Counts images through the stem's convolution, which only runs when the frozen front really computes."""

    def __init__(self, calls: list[int]):
        self.calls = calls

    def on_init_end(self, args, state, control, model=None, **kwargs):
        convolution = model.resnet.embedder.embedder.convolution
        convolution.register_forward_hook(lambda module, inputs, output: self.calls.append(len(output)))
