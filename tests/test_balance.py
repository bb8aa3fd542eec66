"""Imbalanced classes: balanced loss weights, the balanced sampler on many processes, the start-up warning."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import make_image_folder, shape_image, tiny_config

import hf_resnet
from hf_resnet.config.arguments import ResNetTrainingArguments
from hf_resnet.config.checks import ArgumentError, validate
from hf_resnet.data.arguments import DataArguments
from hf_resnet.model.arguments import ModelArguments
from hf_resnet.tasks.balance import (
    BalancedSampler,
    balance,
    balanced_class_weights,
    class_counts,
    positive_weights,
    warn_if_imbalanced,
)
from hf_resnet.tasks.single_label import SingleLabel

LABELS = [0] * 90 + [1] * 10


def test_balanced_weights_give_every_class_the_same_total_loss_weight():
    counts = class_counts(LABELS, 3)
    weights = balanced_class_weights(counts)
    assert counts.tolist() == [90, 10, 0]
    assert (weights[:2] * torch.tensor([90.0, 10.0])).tolist() == pytest.approx([50.0, 50.0])
    assert weights[2] == 0  # a class without training images never appears in the loss


def test_class_weights_raise_the_loss_of_a_mistake_on_the_rare_class():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    weights = balanced_class_weights(class_counts(LABELS, 2))
    wrong_on_rare = SingleLabel().loss(0.0, weights)((logits,), torch.tensor([0, 0]))
    wrong_on_common = SingleLabel().loss(0.0, weights)((logits,), torch.tensor([1, 1]))
    assert wrong_on_common > SingleLabel().loss()((logits,), torch.tensor([1, 1]))
    assert wrong_on_rare < wrong_on_common


def test_multi_label_class_weights_are_bce_positive_weights():
    rows = np.array([[1.0, 0.0, 0.0]] * 8 + [[0.0, 1.0, 1.0]] * 2)
    assert positive_weights(class_counts(rows, 3), len(rows)).tolist() == pytest.approx([0.25, 4.0, 4.0])
    everywhere = np.ones((4, 1))
    assert positive_weights(class_counts(everywhere, 1), 4).tolist() == [1.0]  # its positive term is all it has


def test_the_balanced_sampler_draws_classes_about_equally_and_the_same_sequence_on_every_process():
    ranks = [BalancedSampler(LABELS, 2, seed=7) for _ in range(2)]  # what each of two processes builds
    for sampler in ranks:
        sampler.set_epoch(3)
    first, second = (list(sampler) for sampler in ranks)
    assert first == second and len(first) == len(LABELS)
    drawn = np.bincount(np.array(LABELS)[first], minlength=2)
    assert 30 <= drawn[1] <= 70  # 10% of the data, about half of the draws
    ranks[0].set_epoch(4)
    assert list(ranks[0]) != first  # a new epoch, a new draw


def test_the_balanced_sampler_is_split_between_processes_by_accelerate_without_overlap():
    from accelerate.data_loader import BatchSamplerShard

    batches = torch.utils.data.BatchSampler(BalancedSampler(LABELS, 2, seed=0), batch_size=10, drop_last=False)
    shards = [list(BatchSamplerShard(batches, num_processes=2, process_index=rank)) for rank in range(2)]
    assert [len(shard) for shard in shards] == [5, 5]
    assert shards[0] != shards[1]
    assert sorted(sum(shards[0] + shards[1], [])) == sorted(sum(list(batches), []))


def test_a_start_up_warning_names_the_classes_and_the_options_when_the_largest_is_over_ten_times_the_smallest(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        message = warn_if_imbalanced(np.array([110, 10]), ["common", "rare"])
    assert "'common' has 110" in message and "'rare' only 10" in message
    assert "--class_weights balanced" in message and "--sampler balanced" in message
    assert message in caplog.text
    assert warn_if_imbalanced(np.array([100, 10]), ["common", "rare"]) is None


def test_balance_follows_the_flags(tmp_path):
    args = ResNetTrainingArguments(output_dir=str(tmp_path), class_weights="balanced", sampler="balanced")
    weights, sampler = balance(LABELS, ["a", "b"], SingleLabel().loss_weights, args)
    assert weights.tolist() == pytest.approx([100 / 180, 5.0]) and isinstance(sampler, BalancedSampler)
    assert balance(
        LABELS, ["a", "b"], SingleLabel().loss_weights, ResNetTrainingArguments(output_dir=str(tmp_path))
    ) == (None, None)


@pytest.mark.parametrize("flag", ["class_weights", "sampler"])
def test_an_unknown_balance_choice_is_refused_naming_the_flag(tmp_path, flag):
    args = ResNetTrainingArguments(output_dir=str(tmp_path / "out"), **{flag: "inverse"})
    with pytest.raises(ArgumentError, match=f"^--{flag} inverse: choose one of"):
        validate(ModelArguments(arch="resnet-18"), DataArguments(train_dir=str(tmp_path)), args)


@pytest.fixture(scope="module")
def imbalanced_folders(tmp_path_factory):
    """40 squares, 40 horizontal bars and 3 vertical bars to train on; 10 of each to score."""
    root = tmp_path_factory.mktemp("imbalanced")
    rng = np.random.default_rng(1)
    for shape, (name, count) in enumerate((("circle", 40), ("hbar", 40), ("vbar", 3))):
        (root / "train" / name).mkdir(parents=True)
        for i in range(count):
            shape_image(shape, rng).save(root / "train" / name / f"{name}_{i:03d}.png")
    make_image_folder(root / "val", per_class=10, seed=2)
    return root


#: Seeds averaged over: which of the few rare pictures a tiny model happens to learn in a short run varies with the
#: seed (and, like a seed, with the CPU's arithmetic), so one run decides nothing; three make the effect clear.
SEEDS = (42, 1, 2)


def _minority_recall(folders, tmp_path, **flags) -> float:
    """The rare class's validation recall, averaged over SEEDS."""
    recalls = []
    for seed in SEEDS:
        output_dir = tmp_path / f"{'_'.join(flags) or 'plain'}-{seed}"
        hf_resnet.finetune(
            train_dir=str(folders / "train"),
            validation_dir=str(folders / "val"),
            output_dir=str(output_dir),
            config=tiny_config(3),
            image_size=32,
            crop_scale_min=0.8,  # shapes must stay whole for a tiny model to learn them in a few epochs
            num_train_epochs=3,  # long enough to learn the common shapes, too short to learn 3 pictures unaided
            learning_rate=3e-3,
            per_device_train_batch_size=16,
            seed=seed,
            report_to="none",
            disable_tqdm=True,
            keep_examples=False,
            save_strategy="no",
            eval_strategy="no",
            **flags,
        )
        report = json.loads((output_dir / "eval_per_class.json").read_text())
        recalls.append(report["recall"][report["labels"].index("vbar")])
    return float(np.mean(recalls))


def test_class_weights_and_the_balanced_sampler_raise_the_minority_class_recall(imbalanced_folders, tmp_path):
    plain = _minority_recall(imbalanced_folders, tmp_path)
    assert _minority_recall(imbalanced_folders, tmp_path, class_weights="balanced") > plain
    assert _minority_recall(imbalanced_folders, tmp_path, sampler="balanced") > plain
