"""Multi-label classification: label sets from folders and datasets, BCE, thresholds, metrics, classify, pipeline."""

import json

import datasets
import numpy as np
import pytest
import torch
from conftest import MULTI_SHAPES, label_sets, make_image_folder, multi_shape_image, shape_image, tiny_config
from transformers import ResNetConfig, TrainerCallback, pipeline

import hf_resnet
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.embedded import PAIR_SIZE, digit_pair_folders
from hf_resnet.data.image_datasets import EvalImages, collate
from hf_resnet.data.sources import DataError, load_image_data
from hf_resnet.data.streaming import load_stream
from hf_resnet.data.transforms import MultiHotMix
from hf_resnet.scoring.metrics import compute_multi_label, load_module
from hf_resnet.tasks.calibration import fit_thresholds
from hf_resnet.tasks.loss import multi_label_bce

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


BAD_METADATA = [
    (
        "metadata.csv",
        "file_name,labels\n0.png,cat;dog\n1.png,cat,dog\n",
        r"metadata\.csv line 3: 3 fields for the 2 of "
        r"the header \(file_name,labels\); separate several labels with ';', not a comma",
    ),
    (
        "metadata.jsonl",
        '{"file_name": "0.png", "labels": ["cat"]}\n["1.png", "cat"]\n',
        r"metadata\.jsonl line 2: "
        r"a JSON list, not an object; write one object per line",
    ),
]


@pytest.mark.parametrize("name, text, message", BAD_METADATA, ids=[name for name, _, _ in BAD_METADATA])
def test_a_metadata_row_of_the_wrong_shape_is_one_error_naming_the_file_and_row(tmp_path, name, text, message):
    train = _metadata_folder(tmp_path / "train")
    (train / "metadata.jsonl").unlink()
    (train / name).write_text(text)
    with pytest.raises(DataError, match=message) as error:
        load_image_data(DataArguments(train_dir=str(train)))
    assert "\n" not in str(error.value)


def test_a_metadata_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    train = _metadata_folder(tmp_path / "train", csv=True)
    csv = train / "metadata.csv"
    csv.write_bytes(csv.read_text().encode("utf-8-sig"))
    data = load_image_data(DataArguments(train_dir=str(train), validation_dir=str(train)))
    assert data.labels == ["cat", "dog"] and len(data.validation) == 12
    rows = {row["image"].filename.split("/")[-1]: row["label"] for row in data.validation}
    assert rows["0.png"] == [1.0, 0.0] and rows["1.png"] == [1.0, 1.0]


BAD_THRESHOLDS = [
    float("nan"),
    1.5,
    -0.1,
    [0.5, float("nan"), 0.5],
    [[0.5, 0.5], 0.5, 0.5],
    {"cat": 2.0},
    {"cow": 0.3},
]


@pytest.mark.parametrize("stored", BAD_THRESHOLDS, ids=map(repr, BAD_THRESHOLDS))
def test_thresholds_a_model_cannot_answer_with_are_refused_naming_them(stored):
    from transformers import PretrainedConfig

    from hf_resnet.tasks.multi_label import stored_thresholds

    config = PretrainedConfig(id2label={0: "cat", 1: "dog", 2: "emu"}, thresholds=stored)
    unknown = isinstance(stored, dict) and "cow" in stored
    message = (
        r"name label\(s\) \['cow'\] the model does not have"
        if unknown
        else r"should be one probability per label \(3\), .* each in \[0, 1\]"
    )
    with pytest.raises(ValueError, match=r"^config\.json thresholds .*" + message):
        stored_thresholds(config)
    good = PretrainedConfig(id2label={0: "cat", 1: "dog", 2: "emu"}, thresholds={"dog": 0.25, "emu": 1})
    assert stored_thresholds(good) == [0.5, 0.25, 1.0]


def test_an_unknown_problem_type_is_refused_naming_the_flag(tmp_path):
    from hf_resnet.config.arguments import ResNetTrainingArguments
    from hf_resnet.config.checks import ArgumentError, validate
    from hf_resnet.model.arguments import ModelArguments

    data = DataArguments(problem_type="multilabel", train_dir=str(tmp_path))
    with pytest.raises(ArgumentError, match="^--problem_type multilabel: choose one of single_label_classification"):
        validate(ModelArguments(arch="resnet-18"), data, ResNetTrainingArguments(output_dir=str(tmp_path / "out")))


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


class RecordLabels(TrainerCallback):
    """Keeps the first training batch's targets, as the loss sees them."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.targets = next(iter(train_dataloader))["labels"]


def _tagged(count: int, seed: int) -> datasets.Dataset:
    names = datasets.ClassLabel(names=list(MULTI_SHAPES))
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.Sequence(names)})
    rng = np.random.default_rng(seed)
    sets = [[MULTI_SHAPES.index(name) for name in labels] for labels in label_sets(count)]
    images = [multi_shape_image(indices, rng) for indices in sets]
    return datasets.Dataset.from_dict({"image": images, "labels": sets}, features=features)


def test_a_streamed_dataset_with_a_list_label_column_trains_multi_label(tmp_path):
    streams = datasets.IterableDatasetDict(
        {"train": _tagged(32, 1).to_iterable_dataset(num_shards=2), "validation": _tagged(16, 2).to_iterable_dataset()}
    )
    record = RecordLabels()
    result = hf_resnet.finetune(
        dataset=streams,
        streaming=True,
        config=tiny_config(),
        image_size=32,
        max_steps=4,
        per_device_train_batch_size=8,
        output_dir=str(tmp_path / "out"),
        save_strategy="no",
        callbacks=[record],
        report_to="none",
        disable_tqdm=True,
    )
    assert record.targets.dtype == torch.float32 and record.targets.shape == (8, 3)
    assert set(record.targets.sum(dim=1).tolist()) > {1.0}  # label sets, not one class per image
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["thresholds"]) == 3
    assert [config["id2label"][str(i)] for i in range(3)] == list(MULTI_SHAPES)
    assert result.metrics["eval_samples"] == 16
    for key in ("eval_map", "eval_f1_micro", "eval_f1_macro", "eval_exact_match"):
        assert 0 <= result.metrics[key] <= 1
    answer = hf_resnet.classify(multi_shape_image([0, 2], np.random.default_rng(3)), model=result.output_dir)
    assert all(entry["label"] in MULTI_SHAPES for entry in answer)  # a label set, possibly empty


def test_a_stream_whose_classes_are_unknown_until_read_is_one_clear_error(tmp_path):
    plain = datasets.Dataset.from_dict(
        {"image": [multi_shape_image([0], np.random.default_rng(0))] * 2, "labels": [["square"], ["hbar"]]}
    )
    streams = datasets.IterableDatasetDict(
        {"train": plain.to_iterable_dataset(), "validation": plain.to_iterable_dataset()}
    )
    with pytest.raises(DataError, match="streaming needs a ClassLabel label column, or a list of ClassLabels"):
        hf_resnet.finetune(
            dataset=streams, streaming=True, config=tiny_config(), max_steps=1, output_dir=str(tmp_path / "o")
        )


def test_problem_type_multi_label_streams_single_label_classes_as_one_label_sets():
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(MULTI_SHAPES))})
    plain = datasets.Dataset.from_dict(
        {"image": [multi_shape_image([i % 3], rng) for i in range(6)], "label": [i % 3 for i in range(6)]},
        features=features,
    )
    streams = datasets.IterableDatasetDict({"train": plain.to_iterable_dataset(), "test": plain.to_iterable_dataset()})
    data = load_stream(DataArguments(problem_type="multi_label_classification"), seed=0, data=streams)
    assert data.multi_label and data.labels == list(MULTI_SHAPES)
    assert data.validation["label"][:3] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert all(sum(example["label"]) == 1.0 for example in data.train)
