import pytest
import torch
from conftest import save_tiny_checkpoint, tiny_config
from transformers import ResNetForImageClassification

from hf_resnet.families import PARTS
from hf_resnet.families.resnet import FAMILY as RESNET
from hf_resnet.families.resnet import resnet_config
from hf_resnet.model.arguments import ModelArguments
from hf_resnet.model.build import build_model
from hf_resnet.model.freezing import freeze, unfreeze
from hf_resnet.model.parts import named_parameters_by_part, parse_parts
from hf_resnet.training.optim import parameter_groups


def test_every_parameter_belongs_to_exactly_one_part():
    model = ResNetForImageClassification(tiny_config())
    groups = named_parameters_by_part(model)
    assert set(groups) == set(PARTS)
    assert sum(len(named) for named in groups.values()) == len(list(model.parameters()))
    assert all(groups[part] for part in PARTS)
    assert [name for name, _ in groups["head"]] == ["classifier.1.weight", "classifier.1.bias"]
    assert all(name.startswith("resnet.encoder.stages.2.") for name, _ in groups["stage3"])


def test_part_names_unknown_and_wrapped():
    assert RESNET.part_of("module.resnet.embedder.embedder.convolution.weight") == "embedder"
    with pytest.raises(ValueError, match="not part of"):
        RESNET.part_of("vit.encoder.layer.0.weight")
    with pytest.raises(ValueError, match=r"--freeze: unknown part\(s\) \['stage5'\]"):
        parse_parts("stage1,stage5")
    assert parse_parts("none") == []


def _strided_conv_index(layer) -> int:
    convs = [m for m in layer.layer if hasattr(m, "convolution")]
    return next(i for i, m in enumerate(convs) if m.convolution.stride == (2, 2))


@pytest.mark.parametrize(("variant", "conv_with_stride"), [("v1", 0), ("v1.5", 1)])
def test_v1_strides_in_the_1x1_and_v1_5_in_the_3x3(variant, conv_with_stride):
    config = resnet_config("resnet-50", variant, embedding_size=8, hidden_sizes=[16, 16, 16, 16], depths=[1, 1, 1, 1])
    model = ResNetForImageClassification(config)
    first_block_of_stage2 = model.resnet.encoder.stages[1].layers[0]
    assert _strided_conv_index(first_block_of_stage2) == conv_with_stride
    assert first_block_of_stage2.layer[conv_with_stride].convolution.kernel_size == (
        (1, 1) if variant == "v1" else (3, 3)
    )


def test_checkpoint_gets_a_new_head_and_labels(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt", num_labels=3)
    original = ResNetForImageClassification.from_pretrained(checkpoint)

    model, processor, frozen = build_model(ModelArguments(model_name_or_path=str(checkpoint)), ["ant", "bee"])

    assert model.config.id2label == {0: "ant", 1: "bee"} and model.config.label2id == {"ant": 0, "bee": 1}
    assert model.classifier[1].out_features == 2
    assert frozen == ["embedder", "stage1"]  # the default for a loaded checkpoint
    torch.testing.assert_close(model.resnet.state_dict(), original.resnet.state_dict(), rtol=0, atol=0)
    assert processor.size["shortest_edge"] == 32


def test_same_class_count_but_other_labels_resets_the_head(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt", num_labels=2)
    original = ResNetForImageClassification.from_pretrained(checkpoint)
    model, _, _ = build_model(ModelArguments(model_name_or_path=str(checkpoint)), ["ant", "bee"])
    assert not torch.equal(model.classifier[1].weight, original.classifier[1].weight)
    same, _, _ = build_model(ModelArguments(model_name_or_path=str(checkpoint)), ["class_0", "class_1"])
    assert torch.equal(same.classifier[1].weight, original.classifier[1].weight)


def test_scratch_model_defaults_to_no_freezing_and_an_unknown_arch_is_refused(tmp_path):
    _, _, frozen = build_model(ModelArguments(), ["a", "b"], config=tiny_config())
    assert frozen == []
    with pytest.raises(ValueError, match="--arch 'resnet-7'"):
        build_model(ModelArguments(arch="resnet-7"), ["a", "b"])


def test_frozen_batchnorm_stays_in_eval_mode_through_train_calls():
    torch.manual_seed(0)
    model = ResNetForImageClassification(tiny_config())
    freeze(model, ["embedder", "stage1"])
    stem_bn = model.resnet.embedder.embedder.normalization
    stage4_bn = model.resnet.encoder.stages[3].layers[0].layer[0].normalization
    before_stem, before_stage4 = stem_bn.running_mean.clone(), stage4_bn.running_mean.clone()

    model.train()
    model(torch.randn(4, 3, 32, 32) * 3 + 1)

    assert torch.equal(stem_bn.running_mean, before_stem)
    assert not torch.equal(stage4_bn.running_mean, before_stage4)
    assert not any(p.requires_grad for p in model.resnet.embedder.parameters())

    unfreeze(model, ["embedder"])
    model.train()
    model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not torch.equal(stem_bn.running_mean, before_stem)
    assert all(p.requires_grad for p in model.resnet.embedder.parameters())


def test_parameter_groups_carry_part_rates_and_skip_decay_on_norms():
    model = ResNetForImageClassification(tiny_config())
    groups = parameter_groups(model, head_lr=1e-3, backbone_lr=1e-4, lr_decay=0.5, weight_decay=0.01)
    by_name = {group["name"]: group for group in groups}
    assert by_name["head"]["lr"] == 1e-3
    assert by_name["stage4"]["lr"] == 1e-4
    assert by_name["stage3"]["lr"] == pytest.approx(5e-5)
    assert by_name["embedder"]["lr"] == pytest.approx(1e-4 * 0.5**4)
    assert by_name["stage2"]["weight_decay"] == 0.01 and by_name["stage2/no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in by_name["stage2/no_decay"]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_sync_batchnorm_conversion_keeps_frozen_statistics_and_runs_alone_on_cpu():
    """What of --sync_bn runs on a CPU: the conversion run.py makes, and the converted model in one process.

    Training it across CPU processes is refused (torch's DDP rejects SyncBatchNorm there); see
    tests/test_distributed.py. Without a process group SyncBatchNorm computes what BatchNorm does.
    """
    torch.manual_seed(0)
    plain = ResNetForImageClassification(tiny_config())
    freeze(plain, ["embedder"])
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(ResNetForImageClassification(tiny_config()))
    synced.load_state_dict(plain.state_dict())
    freeze(synced, ["embedder"])  # as run.py: the converted layers need the frozen-statistics hooks again
    stem_bn = synced.resnet.embedder.embedder.normalization
    assert isinstance(stem_bn, torch.nn.SyncBatchNorm)
    before = stem_bn.running_mean.clone()

    images = torch.randn(4, 3, 32, 32) * 3 + 1
    plain.train(), synced.train()
    torch.testing.assert_close(synced(images).logits, plain(images).logits)
    assert torch.equal(stem_bn.running_mean, before)
    stage4 = synced.resnet.encoder.stages[3].layers[0].layer[0].normalization
    torch.testing.assert_close(
        stage4.running_mean, plain.resnet.encoder.stages[3].layers[0].layer[0].normalization.running_mean
    )


def test_drop_path_and_dropout_are_added_to_a_transformers_resnet_and_leave_its_weights_and_names_alone(tmp_path):
    from timm.layers import DropPath

    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    plain, _, _ = build_model(ModelArguments(model_name_or_path=str(checkpoint)), ["a", "b"])
    args = ModelArguments(model_name_or_path=str(checkpoint), drop_path_rate=0.2, drop_rate=0.3)
    model, _, _ = build_model(args, ["a", "b"])
    layers = [layer for stage in model.resnet.encoder.stages for layer in stage.layers]
    rates = [next((m.drop_prob for m in layer.layer if isinstance(m, DropPath)), 0.0) for layer in layers]
    assert rates == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])  # timm's linear rule over the 4 blocks
    assert [m.p for m in model.classifier.modules() if isinstance(m, torch.nn.Dropout)] == [0.3]
    assert model.state_dict().keys() == plain.state_dict().keys()
    pixels = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixels).logits, model(pixels).logits)  # identities in evaluation
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model(pixels).logits, model(pixels).logits)  # stochastic in training
