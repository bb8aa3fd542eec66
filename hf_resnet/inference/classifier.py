"""`classify`: any picture in, the transformers pipeline's answer out.

A user holds images in many forms (a path, a URL, bytes from a web form, a PIL image, a numpy
array from OpenCV, a tensor from a DataLoader); every one becomes an upright 8-bit RGB PIL
image first, so the checkpoint's own image processor sees exactly what it would see in the
transformers pipeline and the answers match. Models are loaded once and kept, because loading
a ResNet-50 costs far more than classifying one image with it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from ..data.images import Picture, describe, load_picture
from ..families.loading import ModelLoadError, check_model_source, load_errors
from ..model.tta import resolve_mode
from ..runtime.precision import cpu_bf16_rule
from ..tasks import Task, task_for
from .prediction import model_forward, predict, prepare_model

#: Images per forward pass. 16 keeps a ResNet-50 batch under ~1 GB of activations on CPU.
DEFAULT_BATCH_SIZE = 16
#: The file the ONNX backend looks for in a model folder, then in its `onnx/` subfolder (`hf-resnet export`'s output).
ONNX_FILE_NAME = "model.onnx"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device`, or the fastest one present (CUDA, then Apple MPS, then CPU).

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if device is not None:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError):
            raise ModelLoadError(f"--device {device}: not a device; use cpu, cuda, cuda:N or mps") from None
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not available.get(chosen.type, True):
            raise ModelLoadError(f"--device {device}: not present on this machine; use cpu or leave --device out")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ----------------------------------------------------------------------------- models


@dataclass
class Classifier:
    """A model ready to answer: its config (labels, temperature), image processor and forward function."""

    config: PretrainedConfig
    processor: Any
    forward: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    backend: str = "torch"
    model: torch.nn.Module | None = None
    precision: str = "fp32"

    @property
    def task(self) -> Task:
        """What the config says the model answers: a ranking of classes, or (multi-label) a label set."""
        return task_for(self.config)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Exactly the checkpoint's image processor, as the transformers pipeline applies it."""
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities: softmax (or sigmoid, as the pipeline chooses) of logits / temperature."""
        return self.task.scores(logits, self.config)


#: Precisions `classify` runs a PyTorch model in; "auto" is bf16 where the hardware runs it natively.
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "bf16" or "fp32" for `precision` on `device`: "auto" is bf16 where training would run bf16 autocast
    by default (`runtime.precision.cpu_bf16_rule` on a CPU; top-1 answers agree with fp32 on at least 99%
    of images, tests/test_precision.py) and on GPUs with native bf16, fp32 elsewhere, where bf16 would only
    be slower.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if device.type != "cpu":
        return "fp32"
    return "bf16" if cpu_bf16_rule()[0] else "fp32"


def find_onnx_file(folder: Path) -> Path:
    """The exported ONNX file for a model folder (`model.onnx` there or in its `onnx/` subfolder).

    >>> find_onnx_file(Path("nowhere"))
    Traceback (most recent call last):
    ...
    FileNotFoundError: no model.onnx in nowhere or nowhere/onnx; run `hf-resnet export --model nowhere`
    """
    for candidate in (folder / ONNX_FILE_NAME, folder / "onnx" / ONNX_FILE_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {ONNX_FILE_NAME} in {folder} or {folder / 'onnx'}; run `hf-resnet export --model {folder}`"
    )


def onnx_session(path: str | os.PathLike) -> Any:
    """An ONNX Runtime CPU session with full graph optimisation (fuses Conv+BN+ReLU, QDQ into int8 kernels)."""
    import onnxruntime  # optional: the [export] extra

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


#: Runtimes `classify` runs a model with: PyTorch, ONNX Runtime (`hf-resnet export`), OpenVINO (`--format openvino`).
BACKENDS = ("torch", "onnx", "openvino")


def find_openvino_file(folder: Path) -> Path:
    """The OpenVINO IR of a model folder (`model.xml` there or in its `openvino/` subfolder)."""
    for candidate in (folder / "model.xml", folder / "openvino" / "model.xml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no model.xml in {folder} or {folder / 'openvino'}; run `hf-resnet export --model {folder} --format openvino`"
    )


def _openvino_classifier(location: Path) -> Classifier:
    from .openvino_export import INSTALL_HINT, missing_openvino, openvino_runner

    if missing := missing_openvino():
        raise ModelLoadError(f"--backend openvino needs {', '.join(missing)}: {INSTALL_HINT}")
    xml = location if location.suffix == ".xml" else find_openvino_file(location)
    try:
        forward = openvino_runner(xml)
    except Exception as error:  # OpenVINO raises RuntimeError subclasses with the parser's message
        detail = " ".join(str(error).split())[:300]
        raise ModelLoadError(
            f"--model {xml}: OpenVINO cannot load it ({detail}); export it again "
            f"(hf-resnet export --model FOLDER --format openvino)"
        ) from None
    with load_errors(xml.parent, "--model"):
        config = AutoConfig.from_pretrained(xml.parent)
        processor = AutoImageProcessor.from_pretrained(xml.parent)
    checked_task(config, xml.parent)
    return Classifier(config, processor, forward, torch.device("cpu"), backend="openvino")


def _onnx_classifier(location: Path) -> Classifier:
    onnx_file = location if location.suffix == ".onnx" else find_onnx_file(location)
    try:
        session = onnx_session(onnx_file)
    except Exception as error:  # ONNX Runtime's InvalidProtobuf, Fail, ... derive from Exception only
        detail = " ".join(str(error).split())[:300]
        raise ModelLoadError(
            f"--model {onnx_file}: ONNX Runtime cannot load it ({detail}); the file is truncated or not ONNX: "
            f"export it again (hf-resnet export --model FOLDER)"
        ) from None
    input_name = session.get_inputs()[0].name

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: pixel_values.numpy().astype(np.float32)})[0])

    with load_errors(onnx_file.parent, "--model"):
        config = AutoConfig.from_pretrained(onnx_file.parent)
        processor = AutoImageProcessor.from_pretrained(onnx_file.parent)
    checked_task(config, onnx_file.parent)
    return Classifier(config, processor, forward, torch.device("cpu"), backend="onnx")


def checked_task(config: PretrainedConfig, location: str | os.PathLike) -> Task:
    """The model's task, its settings (a multi-label model's thresholds) usable, before any image is read."""
    task = task_for(config)
    try:
        task.check(config)
    except ValueError as error:
        raise ModelLoadError(f"--model {os.fspath(location)}: {error}; fix or remove them") from None
    return task


def _folder_stamp(location: str, backend: str) -> int:
    # Re-saving a model folder (a new training run, a new export) must not serve old weights from the cache.
    path = Path(location)
    if not path.exists():
        return 0
    files = [path] if path.is_file() else list(path.iterdir())
    if backend in ("onnx", "openvino") and path.is_dir():
        files += list((path / backend).glob("*"))
    return max((f.stat().st_mtime_ns for f in files if f.is_file()), default=0)


@functools.lru_cache(maxsize=8)
def _load_processor(source: str) -> Any:
    return AutoImageProcessor.from_pretrained(source)


@functools.lru_cache(maxsize=4)
def _load_cached(location: str, stamp: int, device: str, backend: str, precision: str) -> Classifier:
    if backend == "onnx":
        return _onnx_classifier(Path(location))
    if backend == "openvino":
        return _openvino_classifier(Path(location))
    torch_device = torch.device(device)
    check_model_source(location, "--model")
    with load_errors(location, "--model"):
        config = AutoConfig.from_pretrained(location)
    checked_task(config, location)
    with load_errors(location, "--model"):
        model = AutoModelForImageClassification.from_pretrained(location, config=config)
        processor = AutoImageProcessor.from_pretrained(location)
    model = prepare_model(model, torch_device)
    forward = model_forward(model, torch_device, precision)
    return Classifier(model.config, processor, forward, torch_device, model=model, precision=precision)


def load_classifier(
    model: str | os.PathLike | torch.nn.Module | Classifier,
    device: str | torch.device | None = None,
    backend: str = "torch",
    processor: Any = None,
    precision: str = "auto",
) -> Classifier:
    """Load (once, then from cache) a model by Hub id or folder, or wrap an already loaded model.

    An already loaded model is switched to eval mode on `device`; its image processor comes from
    `processor` or from the folder or Hub id it was loaded from. `backend="onnx"` runs
    `model.onnx` (see `hf-resnet export`) with ONNX Runtime on CPU; `model` may then also be
    the `.onnx` file itself; `backend="openvino"` runs `model.xml` (`hf-resnet export --format openvino`)
    with OpenVINO on CPU, `model` then also the `.xml` file.
    `precision` ("auto", "fp32", "bf16"): see `resolve_precision`.
    """
    if isinstance(model, Classifier):
        return model
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if isinstance(model, torch.nn.Module):
        if backend != "torch":
            raise ValueError(f"backend={backend!r} needs a model folder or exported file, not a loaded torch model")
        torch_device = pick_device(device)
        if processor is None:
            source = model.config.name_or_path
            if not source:
                raise ValueError("this model has no name_or_path to load its image processor from; pass processor=")
            processor = _load_processor(source)
        prepare_model(model, torch_device)
        precision = resolve_precision(precision, torch_device)
        forward = model_forward(model, torch_device, precision)
        return Classifier(model.config, processor, forward, torch_device, model=model, precision=precision)
    location = os.fspath(model)
    torch_device = torch.device("cpu") if backend != "torch" else pick_device(device)
    precision = "fp32" if backend != "torch" else resolve_precision(precision, torch_device)
    classifier = _load_cached(location, _folder_stamp(location, backend), str(torch_device), backend, precision)
    if processor is not None:
        classifier = dataclasses.replace(classifier, processor=processor)
    return classifier


# ----------------------------------------------------------------------------- classify


def classify(
    image: Picture | Sequence[Picture],
    model: str | os.PathLike | torch.nn.Module | Classifier = "microsoft/resnet-50",
    top_k: int | None = 5,
    device: str | torch.device | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: str = "torch",
    precision: str = "auto",
    tta: bool | str | None = None,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Classify one image or a list of images; answers have the transformers pipeline's shape.

    Scores are calibrated when the model's config holds a fitted `calibration_temperature`.
    A multi-label model (config `problem_type="multi_label_classification"`) answers with its label
    set: every label whose sigmoid score reaches its threshold (tuned on validation, in config
    `thresholds`), best first and at most `top_k`; an empty list when none does.
    A list input gives a list of answers, one per image, computed in batches of `batch_size`.
    `precision="auto"` runs bf16 autocast where the hardware has native bf16 (see `resolve_precision`).
    `tta` averages the logits over a few views of each image (`model/tta.py`): "flip" (or True) the
    image and its mirror image, "crops" five shifted crops, "flip+crops" both; None (the default)
    does what the model was calibrated with (config `tta`, set by training with `--tta`), else one pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive number of labels, or None for all of them; got {top_k!r}")
    if tta is not None:
        resolve_mode(tta)  # a bad mode is refused before the model loads
    single = not isinstance(image, (list, tuple))
    sources = [image] if single else list(image)
    names = [None] * len(sources) if single else [f"item {i} {describe(s)}" for i, s in enumerate(sources)]
    classifier = load_classifier(model, device=device, backend=backend, precision=precision)
    mode = resolve_mode(tta, getattr(classifier.config, "tta", None))

    def batches():  # pictures are opened a batch at a time: a long list never sits in memory decoded
        for start in range(0, len(sources), batch_size):
            chunk = range(start, min(start + batch_size, len(sources)))
            yield {"pixel_values": classifier.preprocess([load_picture(sources[i], names[i]) for i in chunk])}

    answers = []
    for _, logits in predict(classifier.forward, batches(), mode):
        scores = classifier.scores(logits)
        answers.extend(classifier.task.answer(row, classifier.config, top_k) for row in scores)
    return answers[0] if single else answers
