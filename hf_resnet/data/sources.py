"""From a Hub dataset, a folder of class sub-folders or a `datasets.Dataset` to two checked splits.

Whatever the source, the result is the same: `train` and `validation` datasets with an
`image` column (a `datasets.Image` feature, decoded lazily) and a `label` column (a
`ClassLabel` whose names are the classes), sharing one label list. Every problem a user can
fix (a missing folder, an empty class, a corrupt file, a validation label that training never
saw) is found here, before a model is built, and reported with the file or argument to fix.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import ClassLabel, Dataset, DatasetDict, Features
from datasets import Image as ImageFeature
from tqdm.auto import tqdm

from ..data.arguments import DataArguments
from ..data.images import IMAGE_EXTENSIONS, ImageError, open_image, opened
from ..data.multilabel import (
    MULTI_LABEL,
    SINGLE_LABEL,
    MetadataError,
    from_label_lists,
    is_list_feature,
    label_lists_of,
    label_names,
    metadata_file,
    read_metadata,
    to_multi_hot,
)

logger = logging.getLogger(__name__)

#: Split names tried, in order, for held-out data in a Hub dataset.
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "test")
#: How many problem lines an error message shows before summarising the rest.
MAX_LISTED = 20
#: Training images whose sizes `warn_if_cropped` reads (headers only): enough for a median, quick on any dataset.
SIZE_SAMPLE = 200
#: The share of the typical image a `crop` frame may leave out before a run warns: 1/3 is a 3:2 photo's,
#: which ImageNet-style single-label data has and crops well; wider images lose what is at their sides.
UNSEEN_WARNING = 0.34


class DataError(ValueError):
    """A problem with the user's data, phrased so they know which file or argument to fix."""


@dataclass
class ImageData:
    """Two splits with canonical `image`/`label` columns and the class names they share."""

    train: Dataset
    validation: Dataset
    labels: list[str]
    description: str
    #: The task the data is (`hf_resnet.tasks.task_for` picks it): MULTI_LABEL when `label` holds multi-hot
    #: rows (any number of classes per image) instead of one class index.
    problem_type: str = SINGLE_LABEL
    #: Where the validation images came from, as recipe.json records it: {"folder": path}, {"split": name}
    #: (a split of the dataset) or {"fraction": f} (a share of train held out).
    held_out: dict = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL


def _listing(problems: list[str]) -> str:
    shown = "\n".join(f"  - {problem}" for problem in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def _report(problems: list[str], skip: bool, what: str) -> None:
    if not problems:
        return
    if not skip:
        raise DataError(
            f"{len(problems)} bad file(s) in {what}:\n{_listing(problems)}\n"
            "Fix or remove them, or pass --skip_bad_images to leave them out with a warning."
        )
    logger.warning("Leaving out %d bad file(s) in %s:\n%s", len(problems), what, _listing(problems))


def _verify(sources: list, names: list[str], what: str) -> dict[int, str]:
    """Decode every image once; return {index: problem} for the bad ones.

    With several processes each rank decodes a 1/N slice and the findings are gathered, so the
    scan is N times faster and every rank raises (or skips) exactly the same files: no rank is
    left waiting in a collective while another one has failed.
    """
    state = PartialState()
    mine = range(state.process_index, len(sources), state.num_processes)
    bad: dict[int, str] = {}

    def check(index: int) -> None:
        try:
            open_image(sources[index], name=names[index])
        except ImageError as error:
            bad[index] = f"{names[index]}: {error.problem}"

    # Threads: PIL releases the GIL while decoding.
    with ThreadPoolExecutor(max_workers=4) as pool:
        progress = tqdm(
            pool.map(check, mine),
            total=len(mine),
            desc=f"Checking images in {what}",
            disable=not state.is_main_process,
        )
        list(progress)
    if state.num_processes > 1:
        return {index: problem for part in gather_object([bad]) for index, problem in part.items()}
    return bad


def scan_image_folder(root: str | Path, data_args: DataArguments, argument: str) -> tuple[list[str], list[str]]:
    """List `root/<class>/**/<image>` as (paths, class names), checking every file on the way."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{argument} {root}: no such directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise DataError(
            f"{argument} {root}: no class sub-folders{hint}. Expected {root}/<class name>/<image files>, "
            "one sub-folder per class."
        )
    paths, classes, problems = [], [], []
    for class_dir in class_dirs:
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
        )
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        problems += [f"{p}: not an image file (extension {p.suffix or 'none'})" for p in files if p not in images]
        paths += [str(p.resolve()) for p in images]
        classes += [class_dir.name] * len(images)
    bad = _verify(paths, paths, f"{argument} {root}") if data_args.verify_images else {}
    # One report for everything, so a user fixes the folder once, not once per kind of problem.
    _report(problems + [bad[i] for i in sorted(bad)], data_args.skip_bad_images, f"{argument} {root}")
    keep = [i for i in range(len(paths)) if i not in bad]
    paths, classes = [paths[i] for i in keep], [classes[i] for i in keep]
    counts = Counter(classes)
    empty = [str(d) for d in class_dirs if counts[d.name] == 0]
    if empty:
        raise DataError(
            f"{argument} {root}: empty class folder(s), no usable images in:\n{_listing(empty)}\n"
            "Add images or remove the folder."
        )
    return paths, classes


def _from_files(paths: list[str], classes: list[str], labels: list[str]) -> Dataset:
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=labels)})
    return Dataset.from_dict({"image": paths, "label": [labels.index(c) for c in classes]}, features=features)


def _check_known(classes, labels: list[str], where: str) -> None:
    unknown = sorted(set(classes) - set(labels))
    if unknown:
        raise DataError(
            f"{where}: label(s) {unknown} do not occur in the training data (training labels: {labels}). "
            "Rename them to match, or add training examples for them."
        )


def check_class_count(labels: list[str], where: str) -> None:
    if len(labels) < 2:
        raise DataError(f"{where}: found only {len(labels)} class {labels}; a classifier needs at least two.")


def scan_metadata_folder(
    root: str | Path, data_args: DataArguments, argument: str
) -> tuple[list[str], list[list[str]]]:
    """List the images of a multi-label folder (see data/multilabel.py) with their label lists, checking each."""
    path = metadata_file(root)
    if path is None:
        raise DataError(f"{argument} {root}: no metadata.jsonl or metadata.csv listing each image's labels")
    try:
        paths, label_lists = read_metadata(path)
    except MetadataError as error:
        raise DataError(f"{argument}: {error}") from None
    bad = _verify(paths, paths, f"{argument} {root}") if data_args.verify_images else {}
    _report([bad[i] for i in sorted(bad)], data_args.skip_bad_images, f"{argument} {root}")
    keep = [i for i in range(len(paths)) if i not in bad]
    return [paths[i] for i in keep], [label_lists[i] for i in keep]


def _load_multi_label_folders(data_args: DataArguments, seed: int) -> ImageData:
    paths, label_lists = scan_metadata_folder(data_args.train_dir, data_args, "--train_dir")
    labels = sorted({name for row in label_lists for name in row})
    check_class_count(labels, f"--train_dir {data_args.train_dir}")
    train = from_label_lists(paths, label_lists, labels)
    description = str(data_args.train_dir)
    if data_args.validation_dir:
        val_paths, val_lists = scan_metadata_folder(data_args.validation_dir, data_args, "--validation_dir")
        _check_known(
            {name for row in val_lists for name in row}, labels, f"--validation_dir {data_args.validation_dir}"
        )
        validation = from_label_lists(val_paths, val_lists, labels)
        return ImageData(train, validation, labels, description, MULTI_LABEL, {"folder": data_args.validation_dir})
    train, validation = split_random(train, data_args.validation_split, seed, "--train_dir")
    return ImageData(train, validation, labels, description, MULTI_LABEL, {"fraction": data_args.validation_split})


def split_random(dataset: Dataset, fraction: float, seed: int, where: str) -> tuple[Dataset, Dataset]:
    """Carve a random validation split: label sets cannot be stratified the way single classes can."""
    if not 0 < fraction < 1:
        raise DataError(
            f"--validation_split must be between 0 and 1 (got {fraction}) when {where} has no held-out set"
        )
    parts = dataset.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def _load_folders(data_args: DataArguments, seed: int) -> ImageData:
    if metadata_file(data_args.train_dir) is not None:
        return _load_multi_label_folders(data_args, seed)
    paths, classes = scan_image_folder(data_args.train_dir, data_args, "--train_dir")
    labels = sorted(set(classes))
    check_class_count(labels, f"--train_dir {data_args.train_dir}")
    train = _from_files(paths, classes, labels)
    description = str(data_args.train_dir)
    if data_args.validation_dir:
        val_paths, val_classes = scan_image_folder(data_args.validation_dir, data_args, "--validation_dir")
        _check_known(val_classes, labels, f"--validation_dir {data_args.validation_dir}")
        missing = sorted(set(labels) - set(val_classes))
        if missing:
            logger.warning("--validation_dir has no images of class(es) %s: they are not evaluated.", missing)
        validation = _from_files(val_paths, val_classes, labels)
        return ImageData(train, validation, labels, description, held_out={"folder": data_args.validation_dir})
    train, validation = split_stratified(train, data_args.validation_split, seed, "--train_dir")
    return ImageData(train, validation, labels, description, held_out={"fraction": data_args.validation_split})


def split_stratified(dataset: Dataset, fraction: float, seed: int, where: str) -> tuple[Dataset, Dataset]:
    """Carve a validation split with every class in the same proportion as in training."""
    if not 0 < fraction < 1:
        raise DataError(
            f"--validation_split must be between 0 and 1 (got {fraction}) when {where} has no held-out set"
        )
    counts = Counter(dataset["label"])
    names = dataset.features["label"].names
    too_few = sorted(names[label] for label, count in counts.items() if count < 2)
    if too_few:
        raise DataError(
            f"{where}: class(es) {too_few} have a single image, too few to carve a validation split. "
            "Add images, or give a separate validation set."
        )
    try:
        parts = dataset.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    except ValueError as error:
        raise DataError(f"{where}: cannot carve a stratified {fraction:.0%} validation split: {error}") from None
    return parts["train"], parts["test"]


def pick_column(dataset: Dataset, given: str | None, candidates: tuple[str, ...], argument: str) -> str:
    columns = dataset.column_names
    if given:
        if given not in columns:
            raise DataError(f"{argument} {given!r} is not a column of the dataset (columns: {columns})")
        return given
    for name in candidates:
        if name in columns:
            return name
    raise DataError(f"cannot guess the {argument.lstrip('-').replace('_', ' ')}; pass {argument} (columns: {columns})")


def select_image_and_label(split, image_column: str, label_column: str):
    """Keep only the two columns, named `image` and `label` (works on streams too)."""
    split = split.select_columns([image_column, label_column])
    if image_column != "image":
        split = split.rename_column(image_column, "image")
    if label_column != "label":
        split = split.rename_column(label_column, "label")
    return split


def _canonical(split: Dataset, image_column: str, label_column: str, labels: list[str] | None) -> Dataset:
    """Rename to `image`/`label` and make `label` a ClassLabel with the shared names."""
    split = select_image_and_label(split, image_column, label_column)
    if not isinstance(split.features["image"], ImageFeature):
        split = split.cast_column("image", ImageFeature())
    feature = split.features["label"]
    if isinstance(feature, ClassLabel) and (labels is None or feature.names == labels):
        return split
    values = split["label"]
    if isinstance(feature, ClassLabel):
        values = [feature.names[v] for v in values]
    values = [str(v) for v in values]
    labels = labels if labels is not None else sorted(set(values))
    index = {name: i for i, name in enumerate(labels)}
    # A ClassLabel is matched by its names; cast to plain ints first, since a cast to string gives "2", not the name.
    names = feature.names if isinstance(feature, ClassLabel) else None
    split = split.cast_column("label", datasets.Value("int64")) if names else split
    split = split.map(
        lambda batch: {"label": [index[names[v] if names else str(v)] for v in batch["label"]]}, batched=True
    )
    return split.cast_column("label", ClassLabel(names=labels))


def _verify_split(split: Dataset, data_args: DataArguments, what: str) -> Dataset:
    if not data_args.verify_images:
        return split
    raw = split.cast_column("image", ImageFeature(decode=False))["image"]
    sources = [item["bytes"] if item.get("bytes") else item["path"] for item in raw]
    names = [item.get("path") or f"{what}[{i}]" for i, item in enumerate(raw)]
    bad = _verify(sources, names, what)
    _report([bad[i] for i in sorted(bad)], data_args.skip_bad_images, what)
    return split.select([i for i in range(len(split)) if i not in bad]) if bad else split


def _from_datasets(data: Dataset | DatasetDict, data_args: DataArguments, seed: int, description: str) -> ImageData:
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    if "train" not in data:
        raise DataError(f"{description}: no 'train' split (splits: {list(data)})")
    train = data["train"]
    image_column = pick_column(train, data_args.image_column, ("image", "img", "pixel_values"), "--image_column")
    label_column = pick_column(train, data_args.label_column, ("label", "labels", "fine_label"), "--label_column")
    if is_list_feature(train.features[label_column]):
        return _multi_label_datasets(data, data_args, seed, description, image_column, label_column)
    train = _canonical(train, image_column, label_column, None)
    labels = list(train.features["label"].names)
    check_class_count(labels, description)
    val_name = next((name for name in VALIDATION_SPLIT_NAMES if name in data), None)
    if val_name is None:
        train = _verify_split(train, data_args, f"{description} train")
        train, validation = split_stratified(train, data_args.validation_split, seed, description)
    else:
        raw_val = data[val_name]
        for column in (image_column, label_column):
            if column not in raw_val.column_names:
                raise DataError(f"{description}: split {val_name!r} has no column {column!r}")
        feature = raw_val.features[label_column]
        val_labels = feature.names if isinstance(feature, ClassLabel) else raw_val.unique(label_column)
        _check_known(
            [str(v) for v in val_labels] if not isinstance(feature, ClassLabel) else val_labels,
            labels,
            f"{description} split {val_name!r}",
        )
        validation = _canonical(raw_val, image_column, label_column, labels)
        train = _verify_split(train, data_args, f"{description} train")
        validation = _verify_split(validation, data_args, f"{description} {val_name}")
    held_out = {"fraction": data_args.validation_split} if val_name is None else {"split": val_name}
    return ImageData(train, validation, labels, description, held_out=held_out)


def _multi_label_split(split: Dataset, image_column: str, label_column: str, labels: list[str]) -> Dataset:
    split = select_image_and_label(split, image_column, label_column)
    return to_multi_hot(split, labels)


def _multi_label_datasets(data, data_args: DataArguments, seed: int, description, image_column, label_column):
    """`_from_datasets` for a label column holding a list of labels per image."""
    labels = label_names(data["train"], label_column)
    check_class_count(labels, description)
    train = _multi_label_split(data["train"], image_column, label_column, labels)
    train = _verify_split(train, data_args, f"{description} train")
    val_name = next((name for name in VALIDATION_SPLIT_NAMES if name in data), None)
    if val_name is None:
        train, validation = split_random(train, data_args.validation_split, seed, description)
    else:
        raw_val = data[val_name]
        for column in (image_column, label_column):
            if column not in raw_val.column_names:
                raise DataError(f"{description}: split {val_name!r} has no column {column!r}")
        present = {name for row in label_lists_of(raw_val, label_column) for name in row}
        _check_known(present, labels, f"{description} split {val_name!r}")
        validation = _multi_label_split(raw_val, image_column, label_column, labels)
        validation = _verify_split(validation, data_args, f"{description} {val_name}")
    held_out = {"fraction": data_args.validation_split} if val_name is None else {"split": val_name}
    return ImageData(train, validation, labels, description, MULTI_LABEL, held_out)


def _as_multi_label(data: ImageData) -> ImageData:
    """Single-label data read as multi-label (`--problem_type multi_label_classification`): one label per image."""
    data.train, data.validation = (to_multi_hot(split, data.labels) for split in (data.train, data.validation))
    data.problem_type = MULTI_LABEL
    return data


def passed_dataset_name(dataset: Dataset | DatasetDict) -> str:
    """A name for a dataset passed to finetune(): its own (from a loading script or the Hub) where it has one.

    >>> passed_dataset_name(DatasetDict({"train": Dataset.from_dict({"label": [0]})}))
    'a DatasetDict passed to finetune() (splits: train)'
    """
    splits = dataset if isinstance(dataset, (DatasetDict, datasets.IterableDatasetDict)) else {"train": dataset}
    first = next(iter(splits.values()), None)
    info = getattr(first, "info", None)
    name = info is not None and (info.dataset_name or info.builder_name)
    passed = f"a {type(dataset).__name__} passed to finetune()"
    return f"{name} ({passed})" if name else f"{passed} (splits: {', '.join(splits)})"


def load_image_data(
    data_args: DataArguments, seed: int = 42, dataset: Dataset | DatasetDict | None = None
) -> ImageData:
    """Load, check and split the data a run asks for: an in-memory dataset, folders, or a Hub dataset."""
    if dataset is not None:
        data = _from_datasets(dataset, data_args, seed, passed_dataset_name(dataset))
    elif data_args.train_dir:
        data = _load_folders(data_args, seed)
    elif data_args.dataset_name:
        try:  # config.checks.validate asked first; what the Hub or the cache says since is still one line
            loaded = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config)
        except (ValueError, FileNotFoundError, ConnectionError) as error:
            raise DataError(f"--dataset_name {data_args.dataset_name}: cannot load it: {error}") from None
        data = _from_datasets(loaded, data_args, seed, f"--dataset_name {data_args.dataset_name}")
        data.description = data_args.dataset_name
    else:
        raise DataError("no data: pass --dataset_name, --train_dir, or a datasets.Dataset to finetune()")
    if data_args.problem_type == MULTI_LABEL and not data.multi_label:
        data = _as_multi_label(data)
    if data_args.max_train_samples is not None:
        data.train = data.train.shuffle(seed=seed).select(range(min(data_args.max_train_samples, len(data.train))))
    if data_args.max_eval_samples is not None:  # shuffled first, as in the transformers example: folders list by class
        data.validation = data.validation.shuffle(seed=seed).select(
            range(min(data_args.max_eval_samples, len(data.validation)))
        )
    return data


def _check_model_knows(classes, labels: list[str], where: str) -> None:
    unknown = sorted(set(classes) - set(labels))
    if unknown:
        raise DataError(
            f"{where}: label(s) {unknown} are not classes of the model (its labels: {labels}). "
            "Labels are matched by name: rename them to the model's labels, or leave those images out."
        )


def _single_label_model_error(where: str, what: str, instead: str) -> DataError:
    return DataError(
        f"{where}: {what} (multi-label data), but the model is single-label (its config.json has no "
        f'problem_type "{MULTI_LABEL}"). Score a multi-label model on it, or {instead}.'
    )


def _labelled_folder(test_dir, labels: list[str], data_args: DataArguments, multi_label: bool) -> Dataset:
    """A test folder as the model reads it: class indices, or label sets (class sub-folders as one-label sets)."""
    where = f"--test_dir {test_dir}"
    metadata = metadata_file(test_dir)
    if metadata is not None and not multi_label:
        raise _single_label_model_error(
            where, f"{metadata.name} lists a set of labels per image", "give class sub-folders"
        )
    if metadata is not None:
        paths, label_lists = scan_metadata_folder(test_dir, data_args, "--test_dir")
    else:
        paths, classes = scan_image_folder(test_dir, data_args, "--test_dir")
        _check_model_knows(classes, labels, where)
        if not multi_label:
            return _from_files(paths, classes, labels)
        label_lists = [[name] for name in classes]
    _check_model_knows({name for row in label_lists for name in row}, labels, where)
    return from_label_lists(paths, label_lists, labels)


def _labelled_dataset(dataset: Dataset, labels: list[str], data_args: DataArguments, where: str, multi_label: bool):
    image_column = pick_column(dataset, data_args.image_column, ("image", "img", "pixel_values"), "--image_column")
    label_column = pick_column(dataset, data_args.label_column, ("label", "labels", "fine_label"), "--label_column")
    feature = dataset.features[label_column]
    if is_list_feature(feature) and not multi_label:
        raise _single_label_model_error(
            where, f"column {label_column!r} holds a list of labels per image", "pass a single-label --label_column"
        )
    if multi_label:  # a list column as it is, a single-label one as one-label sets
        present = {name for row in label_lists_of(dataset, label_column) for name in row}
        _check_model_knows(present, labels, where)
        return _multi_label_split(dataset, image_column, label_column, labels)
    present = dataset.unique(label_column)
    _check_model_knows(
        [feature.names[v] if isinstance(feature, ClassLabel) else str(v) for v in present], labels, where
    )
    return _canonical(dataset, image_column, label_column, labels)


def load_labelled_split(
    labels: list[str],
    data_args: DataArguments,
    test_dir: str | Path | None = None,
    split: str = "test",
    dataset: Dataset | None = None,
    multi_label: bool = False,
) -> tuple[Dataset, str]:
    """One checked, labelled split to score a trained model on, and a description of it.

    The split comes from `test_dir` (class sub-folders, or a metadata file of label sets), `dataset`,
    or `data_args.dataset_name` (+ `dataset_config`) at `split`. Its labels are matched to the model's
    `labels` by name, so the `label` column holds the model's class indices, or for a `multi_label`
    model multi-hot rows over them (a single-label set giving one-label rows); a label the model does
    not know is an error naming it, while model classes without images are only left out of the averages.
    Label sets for a single-label model are an error: it cannot be scored on them.
    """
    if test_dir is not None:
        images, description = _labelled_folder(test_dir, labels, data_args, multi_label), str(test_dir)
    else:
        if dataset is None:
            description = f"--dataset_name {data_args.dataset_name} split {split!r}"
            try:
                dataset = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config, split=split)
            except (ValueError, FileNotFoundError, ConnectionError) as error:
                raise DataError(f"{description}: cannot load it: {error}") from None
        else:
            description = "the dataset passed to evaluate()"
        images = _labelled_dataset(dataset, labels, data_args, description, multi_label)
        images = _verify_split(images, data_args, description)
        description = data_args.dataset_name or description
    if data_args.max_eval_samples is not None:
        images = images.select(range(min(data_args.max_eval_samples, len(images))))
    return images, description


def image_sizes(split: Dataset, count: int = SIZE_SAMPLE) -> list[tuple[int, int]]:
    """`(height, width)` of up to `count` images spread over `split`, read from their headers without decoding."""
    step = max(1, len(split) // count)
    raw = split.cast_column("image", ImageFeature(decode=False)).select(range(0, len(split), step))["image"]
    sizes = []
    for item in raw[:count]:
        with opened(item["bytes"] if item.get("bytes") else item["path"], name=item.get("path")) as image:
            sizes.append((image.height, image.width))
    return sizes


def warn_if_cropped(split: Dataset, geometry) -> float:
    """Warn when the frame crops away the sides of the typical training image; returns the share it never sees.

    Evaluation, classify and the pipeline see only the frame, so a label about something at the sides
    of a wide image cannot be learnt to be seen there. The warning is for the sides (a frame of another
    shape than the images); the share it prints and returns is all that is never seen of the median
    image: its sides and the crop_pct border all round, as the processor computes them.
    """
    from ..data.transforms import aspect_kept, unseen_share

    if geometry.fit != "crop" or not len(split):
        return 0.0
    sizes = sorted(image_sizes(split), key=lambda size: aspect_kept(*size, geometry))
    median = sizes[len(sizes) // 2]
    unseen = unseen_share(*median, geometry)
    if 1 - aspect_kept(*median, geometry) >= UNSEEN_WARNING:
        logger.warning(
            "The training images are far from square and --resize crop keeps a centred box of the model's "
            "%dx%d shape: evaluation, classify and the pipeline never see %.0f%% of the median image (%dx%d: its "
            "sides, and a border of %.0f%% all round). If labels can be about what is there, use --resize squash "
            "or --resize pad.",
            geometry.width,
            geometry.height,
            100 * unseen,
            median[1],
            median[0],
            50 * (1 - geometry.crop_pct),
        )
    return unseen
