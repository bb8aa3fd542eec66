"""Multi-label data: images that show any number of classes, each image's labels a set.

The canonical form matches the single-label one except for the `label` column, which holds a
multi-hot row of floats (1.0 for each class present), what a BCE-with-logits loss and the
multi-label metrics take as they are. Sources:

- an image folder with `metadata.jsonl` (`{"file_name": "a.jpg", "labels": ["cat", "dog"]}`,
  an empty list allowed) or `metadata.csv` (`file_name,labels`, labels separated by `;`),
  the layout of the `datasets` imagefolder builder;
- a `datasets.Dataset` whose label column is a list (`Sequence(ClassLabel)` or strings);
- any single-label source, when `--problem_type multi_label_classification` asks for it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature

MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
#: Separator of several labels in one `metadata.csv` cell (a comma would clash with the CSV's own).
CSV_LABEL_SEPARATOR = ";"


class MetadataError(ValueError):
    """A problem in a metadata file, naming the file and line."""


def metadata_file(root: str | Path) -> Path | None:
    """The multi-label metadata file of an image folder, or None when it is a class-sub-folder one."""
    return next((Path(root) / name for name in METADATA_FILES if (Path(root) / name).is_file()), None)


def _jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise MetadataError(f"{path} line {number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise MetadataError(
                    f"{path} line {number}: a JSON {type(row).__name__}, not an object; write one object per line, "
                    f'e.g. {{"file_name": "a.jpg", "labels": ["cat", "dog"]}}'
                )
            rows.append((number, row))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which would join the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    header = ",".join(reader.fieldnames or [])
    for number, row in enumerate(rows, start=2):
        if None in row:  # DictReader's key for the fields beyond the header
            raise MetadataError(
                f"{path} line {number}: {len(row) - 1 + len(row[None])} fields for the {len(row) - 1} of the header "
                f"({header}); separate several labels with {CSV_LABEL_SEPARATOR!r}, not a comma "
                f"(a.jpg,cat{CSV_LABEL_SEPARATOR}dog)"
            )
        cell = (row.get("labels") or "").strip()
        row["labels"] = [label.strip() for label in cell.split(CSV_LABEL_SEPARATOR) if label.strip()]
    return [(number, row) for number, row in enumerate(rows, start=2)]


def read_metadata(path: Path) -> tuple[list[str], list[list[str]]]:
    """(image paths, label lists) listed by a metadata file; paths resolved against its folder."""
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _csv_rows(path)
    paths, label_lists = [], []
    for number, row in rows:
        name, labels = row.get("file_name"), row.get("labels")
        if not name or not isinstance(labels, list):
            raise MetadataError(
                f"{path} line {number}: need a file_name and a list of labels, got {row!r} "
                f'(e.g. {{"file_name": "a.jpg", "labels": ["cat", "dog"]}})'
            )
        image = (path.parent / name).resolve()
        if not image.is_file():
            raise MetadataError(f"{path} line {number}: no image file {image}")
        paths.append(str(image))
        label_lists.append([str(label) for label in labels])
    if not paths:
        raise MetadataError(f"{path}: lists no images")
    return paths, label_lists


def multi_hot(label_lists: list[list[str]], labels: list[str]) -> list[list[float]]:
    """One row per image with 1.0 at each of its labels' indices.

    >>> multi_hot([["b"], [], ["a", "b"]], ["a", "b"])
    [[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    """
    index = {name: i for i, name in enumerate(labels)}
    rows = []
    for present in label_lists:
        row = [0.0] * len(labels)
        for name in present:
            row[index[name]] = 1.0
        rows.append(row)
    return rows


def multi_label_features(labels: list[str]) -> Features:
    return Features(
        {"image": ImageFeature(), "label": datasets.Sequence(datasets.Value("float32"), length=len(labels))}
    )


def from_label_lists(images: list, label_lists: list[list[str]], labels: list[str]) -> Dataset:
    return Dataset.from_dict(
        {"image": images, "label": multi_hot(label_lists, labels)}, features=multi_label_features(labels)
    )


def is_list_feature(feature) -> bool:
    """Whether a label column holds a list per image (`Sequence`, `List` or a Python list of a feature)."""
    return isinstance(feature, (list, datasets.Sequence)) or type(feature).__name__ == "List"


def _inner(feature):
    return feature[0] if isinstance(feature, list) else feature.feature


def feature_class_names(feature) -> tuple[list[str], bool] | None:
    """(class names, whether each image holds a list of them) of a `ClassLabel` or list-of-`ClassLabel` feature;
    None for any other feature, whose classes are only known by reading every value.

    >>> feature_class_names(datasets.Sequence(ClassLabel(names=["cat", "dog"])))
    (['cat', 'dog'], True)
    """
    if isinstance(feature, ClassLabel):
        return list(feature.names), False
    if is_list_feature(feature) and isinstance(_inner(feature), ClassLabel):
        return list(_inner(feature).names), True
    return None


def label_lists_of(split: Dataset, label_column: str = "label") -> list[list[str]]:
    """Each image's labels as names, whether the column is a list, a `Sequence(ClassLabel)` or one class."""
    feature = split.features[label_column]
    values = split[label_column]
    if is_list_feature(feature):
        inner = _inner(feature)
        if isinstance(inner, ClassLabel):
            return [[inner.names[v] for v in row] for row in values]
        return [[str(v) for v in row] for row in values]
    if isinstance(feature, ClassLabel):
        return [[feature.names[v]] for v in values]
    return [[str(v)] for v in values]


def label_names(split: Dataset, label_column: str = "label") -> list[str]:
    """The classes a split's label column can hold: a ClassLabel's names, else the sorted names that occur."""
    feature = split.features[label_column]
    inner = _inner(feature) if is_list_feature(feature) else feature
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    return sorted({name for row in label_lists_of(split, label_column) for name in row})


def to_multi_hot(split: Dataset, labels: list[str]) -> Dataset:
    """`split` (with `image` and `label` columns) with `label` as multi-hot rows over `labels`."""
    rows = multi_hot(label_lists_of(split), labels)
    return split.remove_columns("label").add_column("label", rows).cast(multi_label_features(labels))
