"""The deployable forms of a trained run: which exist on this machine, how each is made and loaded.

A form is a runtime and a precision: PyTorch fp32, bf16 autocast (only where the CPU runs bf16 natively:
elsewhere it is emulated and slower than fp32), ONNX Runtime fp32 and int8, OpenVINO fp32 and int8 (with
the [openvino] extra), CUDA fp16 and bf16 (with a GPU). Exported forms are made by `hf-resnet export`, so
an int8 model that agrees with fp32 too rarely is refused here by the same rule as there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

#: Every form, in the order the report lists them; the first is the reference the others must agree with.
FORM_NAMES = (
    "pytorch-fp32",
    "pytorch-bf16",
    "onnx-fp32",
    "onnx-int8",
    "openvino-fp32",
    "openvino-int8",
    "cuda-fp16",
    "cuda-bf16",
)
REFERENCE = FORM_NAMES[0]
#: Calibration images taken from a run's training folder when none are given: enough for stable activation
#: ranges, few enough to hold decoded in memory.
CALIBRATION_IMAGES = 128


@dataclass
class Form:
    """One way to serve a run: its name (`FORM_NAMES`), the file it loads and that file's size on disk."""

    name: str
    path: str
    size_mb: float


def weights_file(run: Path) -> Path:
    """The run's PyTorch weights (safetensors, or an older pytorch_model.bin)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (run / name).is_file():
            return run / name
    raise FileNotFoundError(f"{run}: no model.safetensors or pytorch_model.bin")


def _size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 1e6, 3)


def load_forward(name: str, run: str | os.PathLike, path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """pixel_values -> float32 logits on the CPU for form `name` of `run` (exported forms from `path`)."""
    from ..inference.classifier import load_classifier
    from ..inference.prediction import model_forward, prepare_model

    if name in ("pytorch-fp32", "pytorch-bf16"):
        return load_classifier(run, device="cpu", precision=name.split("-")[1]).forward
    if name.startswith(("onnx", "openvino")):
        return load_classifier(path, backend=name.split("-")[0]).forward
    from transformers import AutoModelForImageClassification

    cuda = torch.device("cuda")
    model = AutoModelForImageClassification.from_pretrained(run)
    if name == "cuda-fp16":
        return model_forward(prepare_model(model.half(), cuda), cuda, "fp32")  # a half model runs as it is
    return model_forward(prepare_model(model, cuda), cuda, "bf16")


def available_forms(
    run: Path,
    folder: Path,
    test_dir: Path,
    calibration: str | os.PathLike | Sequence | None,
    agrees_with: str = "agrees with",
) -> tuple[list[Form], list[str]]:
    """The forms `run` can take here (exports written under `folder`), and a line per form that is not there."""
    from ..runtime.hardware import NATIVE_BF16_CPU_FLAGS, native_bf16_cpu

    weights = weights_file(run)
    forms = [Form("pytorch-fp32", str(weights), _size_mb(weights))]
    notes = []
    if native_bf16_cpu():
        forms.append(Form("pytorch-bf16", str(weights), _size_mb(weights)))
    else:
        notes.append(
            f"pytorch-bf16: absent, the CPU has no native bf16 ({' or '.join(NATIVE_BF16_CPU_FLAGS)}); "
            "emulated bf16 is slower than fp32"
        )
    exported, export_notes = _exported_forms(run, folder, test_dir, calibration, agrees_with)
    forms += exported
    notes += export_notes
    if torch.cuda.is_available():
        forms.append(Form("cuda-fp16", str(weights), _size_mb(weights)))
        if torch.cuda.is_bf16_supported(including_emulation=False):
            forms.append(Form("cuda-bf16", str(weights), _size_mb(weights)))
    else:
        notes.append("cuda-fp16, cuda-bf16: absent, no CUDA GPU")
    return forms, notes


def _exported_forms(run: Path, folder: Path, test_dir: Path, calibration, agrees_with) -> tuple[list[Form], list[str]]:
    """ONNX (and OpenVINO) forms, from one `hf-resnet export` into `folder`; its refusals become notes."""
    from ..inference.onnx_export import ExportError, check_export_extra, export
    from ..inference.openvino_export import INSTALL_HINT, missing_openvino

    try:
        check_export_extra()
    except ExportError as error:
        return [], [f"onnx-fp32, onnx-int8, openvino-fp32, openvino-int8: absent, {error}"]
    notes = []
    if missing := missing_openvino():
        notes.append(f"openvino-fp32, openvino-int8: absent, needs {', '.join(missing)}: {INSTALL_HINT}")
    format = "onnx" if missing else "openvino"
    try:  # the held-out images are the parity check's samples: agreement is measured where accuracy is
        export(run, folder, format, "int8", calibration, test_dir, latency_repeats=1)
    except ExportError as error:
        notes += _refusals(folder, str(error), agrees_with)
    forms = []
    for name, file in FILES.items():
        if (folder / file).is_file():
            forms.append(Form(name, str(folder / file), _size_mb(folder / file)))
    return forms, notes


#: The file of each exported form in an export folder.
FILES = {
    "onnx-fp32": "model.onnx",
    "onnx-int8": "model_int8.onnx",
    "openvino-fp32": "model.xml",
    "openvino-int8": "model_int8.xml",
}


def _refusals(folder: Path, message: str, agrees_with: str) -> list[str]:
    """A note per form the export refused, each with the reason `onnx_export.int8_refusal` gives."""
    import json

    from ..inference.onnx_export import int8_refusal

    try:
        report = json.loads((folder / "export_report.json").read_text())
    except (OSError, ValueError):
        return [f"exported forms: refused, {message}"]
    notes = []
    for name, key, fp32 in (("onnx-int8", "int8", "model.onnx"), ("openvino-int8", "openvino_int8", "model.xml")):
        variant = report.get(key)
        if variant and variant.get("path") is None:
            agreement = variant["label_set_agreement"] if variant.get("label_set_agreement") is not None else None
            agreement = variant["top1_agreement"] if agreement is None else agreement
            reason = int8_refusal(
                agreement, report["sample_images"], report["min_int8_agreement"], agrees_with, folder / fp32
            )
            notes.append(f"{name}: refused, {reason}")
    return notes or [f"exported forms: refused, {message}"]


def calibration_images(run: Path, given: str | os.PathLike | None, test_dir: Path) -> tuple[object, str | None]:
    """Images to calibrate int8 on: `given`, else some of the run's training images, else the test images.

    Returns the images (a folder or a list of files) and a note when they are the test images themselves,
    which flatters int8 a little: its ranges were fitted to the images it is scored on.
    """
    import json

    from ..data.images import IMAGE_EXTENSIONS

    if given is not None:
        return given, None
    from ..config.run_folder import RUN_ARGS_FILE

    try:  # the run's fingerprint holds the training folder's absolute path (recipe.json's is portable, relative)
        train_dir = json.loads((run / RUN_ARGS_FILE).read_text()).get("train_dir")
    except (OSError, ValueError, AttributeError):
        train_dir = None
    if train_dir and Path(train_dir).is_dir():
        files = sorted(p for p in Path(train_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            step = max(1, len(files) // CALIBRATION_IMAGES)
            return files[::step][:CALIBRATION_IMAGES], None
    return test_dir, "int8 calibrated on the test images (no training folder found): pass --calibration_dir"
