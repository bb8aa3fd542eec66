import logging
from collections import Counter

import numpy as np
import pytest
from conftest import make_image_folder, shape_image
from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Image as ImageFeature
from PIL import Image

from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.sources import DataError, load_image_data


def load(**kwargs):
    return load_image_data(DataArguments(**kwargs), seed=0)


def test_folders_give_shared_sorted_labels(image_folders):
    train, val = image_folders
    data = load(train_dir=str(train), validation_dir=str(val))
    assert data.labels == ["circle", "hbar", "vbar"]
    assert len(data.train) == 72 and len(data.validation) == 24
    assert data.train.features["label"].names == data.validation.features["label"].names == data.labels
    assert data.train[0]["image"].size == (40, 40)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(DataError, match=r"--train_dir .*nowhere: no such directory"):
        load(train_dir=str(tmp_path / "nowhere"))


def test_images_without_class_folders(tmp_path):
    shape_image(0, np.random.default_rng(0)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"no class sub-folders \(1 images lie directly in it\)"):
        load(train_dir=str(tmp_path))


def test_empty_class_folder_is_named(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match=r"(?s)empty class folder.*empty_class"):
        load(train_dir=str(tmp_path))


def test_single_class_is_refused(tmp_path):
    make_image_folder(tmp_path, per_class=3, classes=("only",))
    with pytest.raises(DataError, match=r"only 1 class \['only'\]"):
        load(train_dir=str(tmp_path))


def test_folder_with_no_images_at_all(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with pytest.raises(DataError, match="empty class folder"):
        load(train_dir=str(tmp_path))


def _plant_bad_files(root):
    (root / "hbar" / "notes.txt").write_text("not a picture")
    truncated = root / "vbar" / "cut.jpg"
    shape_image(2, np.random.default_rng(0), size=64).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:500])
    (root / "circle" / "garbage.png").write_bytes(b"\x89PNG not really")
    return {"notes.txt", "cut.jpg", "garbage.png"}


def test_bad_files_are_all_listed_before_training(tmp_path):
    make_image_folder(tmp_path, per_class=4)
    bad = _plant_bad_files(tmp_path)
    with pytest.raises(DataError) as error:
        load(train_dir=str(tmp_path))
    message = str(error.value)
    assert "3 bad file(s)" in message or all(name in message for name in bad)
    for name in bad:
        assert name in message
    assert "--skip_bad_images" in message


def test_skip_bad_images_warns_and_leaves_them_out(tmp_path, caplog):
    make_image_folder(tmp_path, per_class=4)
    bad = _plant_bad_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        data = load(train_dir=str(tmp_path), skip_bad_images=True, validation_split=0.25)
    assert len(data.train) + len(data.validation) == 12
    warned = caplog.text
    for name in bad:
        assert name in warned


def test_odd_modes_in_a_folder_load_as_rgb(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    Image.new("CMYK", (20, 20), (0, 100, 100, 0)).save(tmp_path / "circle" / "cmyk.jpg")
    Image.new("P", (20, 20)).save(tmp_path / "hbar" / "palette.png")
    Image.new("LA", (20, 20)).save(tmp_path / "vbar" / "la.png")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(tmp_path / "vbar" / "deep.png")
    data = load(train_dir=str(tmp_path), validation_split=0.3)
    assert len(data.train) + len(data.validation) == 13


def test_stratified_split_keeps_class_proportions(tmp_path):
    make_image_folder(tmp_path / "a", per_class=20, classes=("x",))
    make_image_folder(tmp_path / "a", per_class=40, classes=("y",), seed=3)
    data = load(train_dir=str(tmp_path / "a"), validation_split=0.25)
    counts = Counter(data.validation["label"])
    assert counts == {0: 5, 1: 10}
    assert len(data.train) == 45


def test_class_with_one_image_cannot_be_split(tmp_path):
    make_image_folder(tmp_path, per_class=5, classes=("a", "b"))
    make_image_folder(tmp_path, per_class=1, classes=("rare",))
    with pytest.raises(DataError, match=r"\['rare'\] have a single image"):
        load(train_dir=str(tmp_path))


def test_unknown_validation_label_is_named(tmp_path):
    make_image_folder(tmp_path / "train", per_class=3, classes=("cat", "dog"))
    make_image_folder(tmp_path / "val", per_class=2, classes=("cat", "dgo"))
    with pytest.raises(DataError, match=r"--validation_dir .*label\(s\) \['dgo'\] do not occur"):
        load(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val"))


def _in_memory(n=12, labels=("b", "a")):
    rng = np.random.default_rng(0)
    return Dataset.from_dict(
        {"img": [shape_image(i % 2, rng) for i in range(n)], "species": [labels[i % 2] for i in range(n)]}
    ).cast_column("img", ImageFeature())


def test_in_memory_dataset_with_string_labels():
    data = load_image_data(DataArguments(validation_split=0.25, label_column="species"), dataset=_in_memory())
    assert data.labels == ["a", "b"]
    assert isinstance(data.train.features["label"], ClassLabel)
    assert len(data.validation) == 3 and set(data.validation["label"]) == {0, 1}


def test_dataset_dict_uses_its_test_split_and_checks_labels():
    data = DatasetDict({"train": _in_memory(), "test": _in_memory(4)})
    loaded = load_image_data(DataArguments(label_column="species"), dataset=data)
    assert len(loaded.train) == 12 and len(loaded.validation) == 4

    bad = DatasetDict({"train": _in_memory(), "test": _in_memory(4, labels=("b", "zebra"))})
    with pytest.raises(DataError, match=r"split 'test'.*\['zebra'\]"):
        load_image_data(DataArguments(label_column="species"), dataset=bad)


def test_class_label_feature_with_names_is_kept():
    rng = np.random.default_rng(0)
    dataset = Dataset.from_dict({"image": [shape_image(i % 3, rng) for i in range(9)], "label": [0, 1, 2] * 3})
    dataset = dataset.cast_column("label", ClassLabel(names=["x", "y", "z"])).cast_column("image", ImageFeature())
    data = load_image_data(DataArguments(validation_split=0.34), dataset=dataset)
    assert data.labels == ["x", "y", "z"]


def test_unknown_column_is_named():
    with pytest.raises(DataError, match=r"--label_column 'kind' is not a column"):
        load_image_data(DataArguments(label_column="kind"), dataset=_in_memory())


def test_folder_inside_a_hidden_directory_and_hidden_files_in_it(tmp_path):
    # ~/.cache/... is where the embedded default lives: only dot-files *inside* the class folders are skipped.
    root = make_image_folder(tmp_path / ".cache" / "photos", per_class=3)
    (root / "circle" / ".DS_Store").write_bytes(b"\x00\x01")
    data = load(train_dir=str(root), validation_split=0.34)
    assert len(data.train) + len(data.validation) == 9
