"""Multi-label classification: label sets from folders and datasets, BCE, thresholds, metrics, classify, pipeline."""

import json

import datasets
import numpy as np
import pytest
import torch
from conftest import make_image_folder, shape_image
from transformers import ResNetConfig, pipeline

import hf_resnet
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.embedded import PAIR_SIZE, digit_pair_folders
from hf_resnet.data.image_datasets import EvalImages, collate
from hf_resnet.data.sources import DataError, load_image_data
from hf_resnet.data.transforms import MultiHotMix
from hf_resnet.evaluation.metrics import compute_multi_label, load_module
from hf_resnet.training.calibration import fit_thresholds
from hf_resnet.training.loss import multi_label_bce

FAST = dict(per_device_train_batch_size=16, per_device_eval_batch_size=32, report_to="none", disable_tqdm=True)
SETS = (["cat"], ["cat", "dog"], [])


def _metadata_folder(root, count=12, csv=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = []
    for i in range(count):
        shape_image(i % 3, rng).save(root / f"{i}.png")
        rows.append((f"{i}.png", SETS[i % 3]))
    if csv:
        lines = ["file_name,labels"] + [f"{name},{';'.join(labels)}" for name, labels in rows]
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [json.dumps({"file_name": name, "labels": labels}) for name, labels in rows]
        (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("csv", [False, True], ids=["jsonl", "csv"])
def test_a_folder_with_metadata_loads_each_image_with_its_label_set(tmp_path, csv):
    train = _metadata_folder(tmp_path / "train", csv=csv)
    data = load_image_data(DataArguments(train_dir=str(train), validation_dir=str(train)))
    assert data.multi_label and data.labels == ["cat", "dog"]
    rows = {row["image"].filename.split("/")[-1]: row["label"] for row in data.validation}
    assert rows["0.png"] == [1.0, 0.0] and rows["1.png"] == [1.0, 1.0] and rows["2.png"] == [0.0, 0.0]
    batch = collate([EvalImages(data.validation, lambda images: torch.zeros(len(images), 3, 8, 8))[i] for i in (0, 1)])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2, 2)


def test_a_dataset_whose_label_column_is_a_list_is_multi_label(tmp_path):
    folder = _metadata_folder(tmp_path / "images")
    names = datasets.ClassLabel(names=["cat", "dog"])
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.Sequence(names)})
    rows = {"image": [str(folder / f"{i}.png") for i in range(12)], "labels": [[0], [0, 1], []] * 4}
    dataset = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "test": datasets.Dataset.from_dict(rows, features=features),
        }
    )
    data = load_image_data(DataArguments(), dataset=dataset)
    assert data.multi_label and data.labels == ["cat", "dog"]
    assert data.validation["label"][:3] == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]


def test_problem_type_multi_label_reads_class_folders_as_one_label_sets(tmp_path):
    train = make_image_folder(tmp_path / "train", per_class=4)
    data = load_image_data(
        DataArguments(train_dir=str(train), validation_dir=str(train), problem_type="multi_label_classification")
    )
    assert data.multi_label and data.labels == ["circle", "hbar", "vbar"]
    assert all(sum(row) == 1.0 for row in data.validation["label"])


def test_a_bad_metadata_line_is_one_error_naming_the_file_and_line(tmp_path):
    train = _metadata_folder(tmp_path / "train")
    (train / "metadata.jsonl").write_text('{"file_name": "0.png", "labels": "cat"}\n')
    with pytest.raises(DataError, match=r"metadata.jsonl line 1: need a file_name and a list of labels"):
        load_image_data(DataArguments(train_dir=str(train)))


def test_an_unknown_problem_type_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--problem_type multilabel: choose"):
        DataArguments(problem_type="multilabel")


def test_bce_loss_is_per_class_and_label_smoothing_pulls_targets_to_one_half():
    logits = torch.tensor([[3.0, -3.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert torch.isclose(multi_label_bce((logits,), targets), expected)
    smoothed = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[0.95, 0.05]]))
    assert torch.isclose(multi_label_bce((logits,), targets, label_smoothing=0.1), smoothed)


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
def test_multi_hot_mixing_keeps_the_labels_of_both_images_in_proportion(cutmix):
    torch.manual_seed(0)
    images = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    mixed, soft = MultiHotMix(1.0, cutmix=cutmix)(images, targets)
    share_of_second = float(mixed[0].mean())  # image 0 is zeros, image 1 ones: its share of the pixels
    assert soft[0].tolist() == pytest.approx([1 - share_of_second, share_of_second, share_of_second], abs=1e-6)


def test_thresholds_fall_between_the_scores_that_best_separate_each_class():
    logits = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    rare, never = fit_thresholds(logits, targets)
    assert torch.sigmoid(torch.tensor(-2.0)) < rare < torch.sigmoid(torch.tensor(-1.0))  # below 0.5: both positives in
    assert never == 0.5  # a class without positives keeps the sigmoid's natural cut


def test_multi_label_metric_modules_load_by_path_and_score_at_the_given_thresholds():
    logits = np.array([[2.0, -2.0], [2.0, 0.2]], dtype=np.float32)
    targets = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    f1 = load_module("multi_label_f1", "micro").compute(predictions=logits, references=targets)
    assert f1 == {"f1_micro": pytest.approx(0.8)}  # one extra label predicted at 0.5
    assert compute_multi_label(logits, targets, thresholds=[0.5, 0.6]) == {
        "map": 1.0,
        "f1_micro": 1.0,
        "f1_macro": 0.5,  # the second class is never present, so its F1 is 0
        "exact_match": 1.0,
    }


@pytest.fixture(scope="module")
def digit_pairs_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    folders = digit_pair_folders(root, {"train": 600, "validation": 150, "test": 150})
    result = hf_resnet.finetune(
        train_dir=str(folders["train"]),
        validation_dir=str(folders["validation"]),
        config=ResNetConfig(layer_type="basic", embedding_size=16, hidden_sizes=[16, 32, 64, 96], depths=[1, 1, 1, 1]),
        image_size=PAIR_SIZE,
        hflip=0.0,
        crop_scale_min=0.6,
        num_train_epochs=6,
        learning_rate=3e-3,
        output_dir=str(root / "model"),
        **FAST,
    )
    return result, folders


def test_digit_pairs_train_to_label_sets_well_above_chance_on_held_out_pictures(digit_pairs_model):
    result, folders = digit_pairs_model
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["thresholds"]) == 10
    rows = [json.loads(line) for line in (folders["test"] / "metadata.jsonl").read_text().splitlines()]
    answers = hf_resnet.classify(
        [str(folders["test"] / r["file_name"]) for r in rows], model=result.output_dir, top_k=None
    )
    predicted = [{a["label"] for a in answer} for answer in answers]
    hits = sum(len(p & set(r["labels"])) for p, r in zip(predicted, rows))
    micro_f1 = 2 * hits / (sum(map(len, predicted)) + sum(len(r["labels"]) for r in rows))
    # Guessing the two commonest digits for every picture scores about 0.2.
    assert micro_f1 > 0.5
    assert all(len(answer) <= 10 for answer in answers)
    for key in ("eval_map", "eval_f1_micro", "eval_f1_macro", "eval_exact_match"):
        assert 0 <= result.metrics[key] <= 1
    card = (result.output_dir / "README.md").read_text()
    assert "| Class | Average precision | Images |" in card


def test_a_plain_transformers_pipeline_gives_sigmoid_scores_and_classify_the_set_over_thresholds(digit_pairs_model):
    result, folders = digit_pairs_model
    image = str(folders["test"] / "pair_00000.png")
    scores = pipeline("image-classification", model=str(result.output_dir), device="cpu")(image, top_k=10)
    with torch.no_grad():
        logits = result.model.cpu()(pixel_values=_pixels(result.output_dir, image)).logits[0]
    by_label = {result.model.config.id2label[i]: float(p) for i, p in enumerate(torch.sigmoid(logits))}
    for item in scores:
        assert item["score"] == pytest.approx(by_label[item["label"]], abs=1e-5)
    thresholds = json.loads((result.output_dir / "config.json").read_text())["thresholds"]
    labels = result.labels
    expected = [item["label"] for item in scores if item["score"] >= thresholds[labels.index(item["label"])]]
    answer = hf_resnet.classify(image, model=result.output_dir, top_k=None, precision="fp32")
    assert [item["label"] for item in answer] == expected
    assert len(hf_resnet.classify(image, model=result.output_dir, top_k=1, precision="fp32")) == min(1, len(expected))


def _pixels(model_dir, image):
    from PIL import Image
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir)(Image.open(image).convert("RGB"), return_tensors="pt")[
        "pixel_values"
    ]
