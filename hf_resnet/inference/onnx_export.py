"""Export to ONNX (and int8) with proof that the exported model still gives the same answers.

An export is only worth deploying if it classifies like the model it came from, so every export
is checked on sample images: the largest logit difference and the top-1 agreement with the
PyTorch model, plus size on disk and latency at batch 1 and 32. A multi-label model answers with
label sets (each label's sigmoid score against its threshold), not a softmax's top class, so it
is checked on what it answers: the largest sigmoid-score difference and the share of images
given the same label set. The int8 model is made by post-training static quantization (ONNX
Runtime, QDQ, per-channel weights) calibrated on images, after Conv+BatchNorm fusion; it is
refused when it agrees with fp32 less than `MIN_INT8_AGREEMENT` of the time. `format="openvino"` adds an
OpenVINO IR converted from the checked ONNX file (and NNCF's int8 model), checked and refused by the same rules.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config.checks import folder_write_problem
from ..data.images import IMAGE_EXTENSIONS, Picture, load_picture
from .classifier import ONNX_FILE_NAME, Classifier, load_classifier, onnx_session

#: Lowest top-1 agreement with the fp32 model at which an int8 model is kept: the issue's target
#: (99% on real images). A model below it changes one answer in a hundred; use better calibration
#: images, or deploy the fp32 ONNX model.
MIN_INT8_AGREEMENT = 0.99
#: fp32 ONNX and PyTorch differ only by float rounding; a larger gap (relative to the largest
#: logit, or in a multi-label model's sigmoid scores, which lie in [0, 1]) means an operator was exported wrongly.
FP32_TOLERANCE = 1e-3
#: Images used for the parity check and for calibration when none are given.
DEFAULT_SAMPLE_COUNT = 64
INT8_NAME = "model_int8.onnx"
#: What the [export] extra installs; torch's ONNX exporter itself needs onnxscript.
EXPORT_MODULES = ("onnx", "onnxscript", "onnxruntime")


class ExportError(RuntimeError):
    """An export that cannot be made or failed its parity check; the message says what was measured and what to do."""


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """Those of an extra's `names` that cannot be imported (none when the extra is installed)."""
    import importlib

    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def check_export_extra() -> None:
    """Refuse at once, before anything is written, when the [export] extra is not installed."""
    if missing := missing_modules(EXPORT_MODULES):
        raise ExportError(f'export needs {", ".join(missing)}: pip install "hf_resnet[export]"')


def check_openvino_extra() -> None:
    """Refuse at once, before anything is written, when `format="openvino"` lacks the [openvino] extra."""
    from .openvino_export import INSTALL_HINT, missing_openvino

    if missing := missing_openvino():
        raise ExportError(f"--format openvino needs {', '.join(missing)}: {INSTALL_HINT}")


def check_arguments(out: Path, latency_repeats: int) -> None:
    """Refuse, before the model loads, an output folder that cannot be written or timings of no run."""
    if problem := folder_write_problem(out):
        raise ExportError(f"--out {out}: {problem}")
    if isinstance(latency_repeats, bool) or not isinstance(latency_repeats, int) or latency_repeats < 1:
        raise ExportError(f"--repeats {latency_repeats}: must be at least 1 (timed runs per latency figure)")


@dataclass
class VariantReport:
    """How one runtime of the model did: file, size, speed and agreement with eager PyTorch fp32.

    A single-label model's agreement is `top1_agreement`; a multi-label model's is `label_set_agreement`
    (and `max_score_diff`, of sigmoid scores), its `top1_agreement` None: the top logit is not its answer.
    """

    path: str | None
    size_mb: float | None
    latency_ms_batch1: float
    latency_ms_batch32: float
    max_logit_diff: float = 0.0
    top1_agreement: float | None = 1.0
    max_score_diff: float | None = None
    label_set_agreement: float | None = None

    @property
    def agreement(self) -> float:
        """The share of sample images answered as eager PyTorch answers them: same top class, or same label set."""
        return self.label_set_agreement if self.label_set_agreement is not None else self.top1_agreement


@dataclass
class ExportReport:
    """Everything `hf-resnet export` measured; saved as `export_report.json` next to the files."""

    model: str
    out_dir: str
    sample_images: int
    eager: VariantReport
    onnx: VariantReport
    int8: VariantReport | None = None
    openvino: VariantReport | None = None
    openvino_int8: VariantReport | None = None
    calibration_images: int = 0
    batchnorm_nodes_after_fusion: int | None = None
    min_int8_agreement: float = MIN_INT8_AGREEMENT
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2)


def reference_photos(count: int = DEFAULT_SAMPLE_COUNT, seed: int = 0) -> list[Image.Image]:
    """Real photographs for parity checks: random crops and flips of scikit-learn's two sample photos.

    scikit-learn ships `china.jpg` and `flower.jpg` (427x640), so checks run offline on real
    image statistics, which random noise does not have. Different seeds give different crops.

    >>> [photo.mode for photo in reference_photos(2)]
    ['RGB', 'RGB']
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        scale = rng.uniform(0.35, 1.0)  # crop side as a fraction of the photo, like RandomResizedCrop
        crop_h, crop_w = int(height * scale), int(width * scale * rng.uniform(0.75, 1.33)) or 1
        crop_w = min(crop_w, width)
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        crop = photo[top : top + crop_h, left : left + crop_w]
        crops.append(Image.fromarray(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)))
    return crops


def _gather(images: str | os.PathLike | Sequence[Picture] | None, seed: int) -> list[Image.Image]:
    if images is None:
        return reference_photos(DEFAULT_SAMPLE_COUNT, seed)
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ExportError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        images = files
    return [load_picture(image) for image in images]


#: Smallest image side the ONNX file accepts: a ResNet's five stride-2 steps need 32 pixels to leave one.
MIN_SIDE = 32


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Write `model` as ONNX with input `pixel_values` (any batch size, height and width) and output `logits`.

    A ResNet pools globally before its head, so one file serves every image size a processor is set to.
    """

    class Logits(torch.nn.Module):  # ONNX wants tensors out, not transformers' output objects
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).logits

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Channels-last weights make torch.export specialise height and width to the example's.
    wrapper = Logits(model.to(memory_format=torch.contiguous_format)).eval().cpu()
    torch.onnx.export(
        wrapper,
        (example[:1].expand(2, -1, -1, -1).contiguous().cpu(),),  # batch 1 would be traced as a constant
        str(path),
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_shapes={
            "pixel_values": {
                0: torch.export.Dim("batch", min=1, max=4096),
                2: torch.export.Dim("height", min=MIN_SIDE, max=8192),
                3: torch.export.Dim("width", min=MIN_SIDE, max=8192),
            }
        },
        dynamo=True,
        external_data=False,  # one self-contained file: ResNets are far below protobuf's 2 GB limit
        verbose=False,
    )
    model.to(memory_format=torch.channels_last)  # export may have touched the layout; restore the fast one
    return path


def _batchnorm_nodes(path: Path) -> int:
    import onnx

    return sum(node.op_type == "BatchNormalization" for node in onnx.load(str(path)).graph.node)


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration: torch.Tensor) -> int:
    """Post-training static int8 quantization of an ONNX classifier; returns BatchNorm nodes left unfused (0).

    ONNX Runtime's pre-processing folds each BatchNorm into the preceding Conv first, so one
    int8 Conv does the work of Conv+BN. Weights are quantized per channel (int8), activations
    per tensor (uint8) with ranges measured on `calibration` (N, 3, H, W) pixel values.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[np.ndarray]):
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"pixel_values": batch}

    out_path = Path(out_path)
    fused = out_path.with_name(out_path.stem + "_fused.onnx")
    quant_pre_process(str(onnx_path), str(fused))
    try:
        unfused = _batchnorm_nodes(fused)
        batches = [chunk.numpy().astype(np.float32) for chunk in calibration.split(8)]
        quantize_static(
            str(fused),
            str(out_path),
            Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        fused.unlink(missing_ok=True)
    return unfused


def measure_latency(run: Callable[[torch.Tensor], object], example: torch.Tensor, repeats: int = 10) -> float:
    """Median wall-clock milliseconds of `run(example)` over `repeats` calls, after one warm-up call.

    >>> measure_latency(lambda x: x + 1, torch.zeros(1), repeats=3) < 1000
    True
    """
    run(example)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def compare_logits(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float]:
    """(largest absolute logit difference, share of images with the same top-1 class).

    >>> compare_logits(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.9, 0.0], [1.0, 0.0]]))
    (1.0, 0.5)
    """
    difference = float((reference.float() - candidate.float()).abs().max())
    agreement = float((reference.argmax(-1) == candidate.argmax(-1)).float().mean())
    return difference, agreement  # unrounded: fp32 rounding gaps are 1e-7, and 0 would say "identical"


def _compare(report: VariantReport, classifier: Classifier, reference: torch.Tensor, candidate: torch.Tensor) -> None:
    report.max_logit_diff, report.top1_agreement = compare_logits(reference, candidate)
    for name, value in classifier.task.compare(reference, candidate, classifier.config).items():
        setattr(report, name, value)  # a multi-label model's label sets, in place of its top-1


def _session_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    session = onnx_session(path)
    return lambda pixel_values: torch.from_numpy(session.run(None, {"pixel_values": pixel_values.numpy()})[0])


def _variant(
    path: Path | None,
    run: Callable,
    pixel_values: torch.Tensor,
    reference: torch.Tensor | None,
    repeats: int,
    classifier: Classifier,
):
    batch32 = pixel_values.repeat((32 + len(pixel_values) - 1) // len(pixel_values), 1, 1, 1)[:32]
    report = VariantReport(
        path=str(path) if path else None,
        size_mb=round(path.stat().st_size / 1e6, 2) if path else None,
        latency_ms_batch1=round(measure_latency(run, pixel_values[:1], repeats), 2),
        latency_ms_batch32=round(measure_latency(run, batch32, max(2, repeats // 5)), 2),
    )
    if reference is not None:
        _compare(report, classifier, reference, _logits(run, pixel_values))
    return report


def _logits(run: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
    # In chunks: a ResNet-50 forward over hundreds of images at once would need gigabytes of activations.
    return torch.cat([run(chunk) for chunk in pixel_values.split(32)])


#: Formats `export` writes; each has its default folder of that name in a model folder.
FORMATS = ("onnx", "openvino")


def _default_out(model: str | os.PathLike | torch.nn.Module, format: str = "onnx") -> Path:
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        return Path(model) / format
    name = model if isinstance(model, (str, os.PathLike)) else model.config.name_or_path or "model"
    return Path(str(name).replace("/", "--") + f"-{format}")


def export(
    model: str | os.PathLike | torch.nn.Module | Classifier,
    out: str | os.PathLike | None = None,
    format: str = "onnx",
    quantize: str | None = None,
    calibration_images: str | os.PathLike | Sequence[Picture] | None = None,
    sample_images: str | os.PathLike | Sequence[Picture] | None = None,
    min_agreement: float = MIN_INT8_AGREEMENT,
    latency_repeats: int = 10,
) -> ExportReport:
    """Export a classifier to ONNX or OpenVINO (optionally also int8) in `out`, check parity and measure it.

    `format="openvino"` also writes `model.xml`/`.bin` (an OpenVINO IR converted from the checked ONNX file)
    and with `quantize="int8"` NNCF's `model_int8.xml` beside ONNX Runtime's int8 file; it needs the
    [openvino] extra. `out` (default: `<model folder>/<format>`) receives `model.onnx`, `model_int8.onnx`, the
    config and image processor (so `classify(..., model=out, backend="onnx")` works) and `export_report.json`.
    Image sets are folders or lists of pictures; by default crops of scikit-learn's sample photos.
    Raises `ExportError` when fp32 logits drift or int8 top-1 agreement is below `min_agreement`; for a
    multi-label model, when its sigmoid scores drift or int8 gives other label sets too often.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    out = Path(out) if out is not None else _default_out(model, format)
    check_arguments(out, latency_repeats)
    check_export_extra()
    if format == "openvino":
        check_openvino_extra()
    classifier = load_classifier(model, device="cpu", precision="fp32")  # the reference the export must match
    if classifier.model is None:
        raise ValueError("export needs the PyTorch model; pass a model folder, Hub id or loaded model")
    out.mkdir(parents=True, exist_ok=True)
    samples = classifier.preprocess(_gather(sample_images, seed=0))
    reference = _logits(classifier.forward, samples)
    onnx_path = export_onnx(classifier.model, out / ONNX_FILE_NAME, samples[:1])
    classifier.config.save_pretrained(out)
    classifier.processor.save_pretrained(out)
    report = ExportReport(
        model=str(classifier.config.name_or_path or model),
        out_dir=str(out),
        sample_images=len(samples),
        eager=_variant(None, classifier.forward, samples, None, latency_repeats, classifier),
        onnx=_variant(onnx_path, _session_runner(onnx_path), samples, reference, latency_repeats, classifier),
        min_int8_agreement=min_agreement,
    )
    _check_fp32(report, report.onnx, "ONNX", reference, onnx_path, out)
    if format == "openvino":
        _add_openvino(report, classifier, out, onnx_path, samples, reference, latency_repeats)
    if quantize == "int8":
        _add_int8(report, classifier, out, onnx_path, samples, reference, calibration_images, latency_repeats)
    _save(report, out)
    return report


def _check_fp32(report, variant, runtime, reference: torch.Tensor, path: Path, out: Path) -> None:
    """Refuse an fp32 export whose answers drift from PyTorch's: logits, or a multi-label model's sigmoid scores."""
    if variant.max_score_diff is not None:
        what, difference, tolerance = "sigmoid scores", variant.max_score_diff, FP32_TOLERANCE
    else:
        what, difference = "logits", variant.max_logit_diff
        tolerance = FP32_TOLERANCE * max(1.0, float(reference.abs().max()))
    if difference > tolerance:
        _save(report, out)
        raise ExportError(
            f"{runtime} {what} differ from PyTorch by up to {difference:.3g} (tolerance {tolerance:.3g}); "
            f"the export is wrong, do not deploy {path}"
        )


def _add_openvino(report, classifier, out, onnx_path, samples, reference, repeats) -> None:
    from .openvino_export import OPENVINO_FILE_NAME, convert, ir_size_mb, openvino_runner

    xml = convert(onnx_path, out / OPENVINO_FILE_NAME)
    report.openvino = _variant(xml, openvino_runner(xml), samples, reference, repeats, classifier)
    report.openvino.size_mb = ir_size_mb(xml)
    _check_fp32(report, report.openvino, "OpenVINO", reference, xml, out)


def _add_int8(report, classifier, out, onnx_path, samples, reference, calibration_images, repeats) -> None:
    """ONNX Runtime's int8 model and, with an OpenVINO export, NNCF's; each kept only if it agrees with fp32."""
    if calibration_images is None:
        report.notes.append("int8 calibrated on crops of scikit-learn's sample photos; pass your own images")
    calibration = classifier.preprocess(_gather(calibration_images, seed=1))
    report.calibration_images = len(calibration)
    int8_path = out / INT8_NAME
    report.batchnorm_nodes_after_fusion = quantize_int8(onnx_path, int8_path, calibration)
    report.int8 = _variant(int8_path, _session_runner(int8_path), samples, reference, repeats, classifier)
    refusals = [_refuse_disagreeing_int8(report, report.int8, classifier, onnx_path)]
    if report.openvino is not None:
        from .openvino_export import OPENVINO_INT8_NAME, ir_size_mb, openvino_runner
        from .openvino_export import quantize_int8 as nncf_int8

        xml = Path(report.openvino.path)
        int8_path = nncf_int8(xml, out / OPENVINO_INT8_NAME, calibration)
        report.openvino_int8 = _variant(int8_path, openvino_runner(int8_path), samples, reference, repeats, classifier)
        report.openvino_int8.size_mb = ir_size_mb(int8_path)
        refusals.append(_refuse_disagreeing_int8(report, report.openvino_int8, classifier, xml))
    if refusals := [reason for reason in refusals if reason]:
        _save(report, out)
        raise ExportError("; ".join(refusals))


def int8_refusal(agreement: float, images: int, minimum: float, agrees_with: str, fp32_path) -> str | None:
    """Why an int8 model must not be deployed (it agrees with fp32 on fewer than `minimum` of `images`), or None.

    The one rule for every int8 model, whichever runtime made it: ONNX Runtime's, NNCF's for OpenVINO.

    >>> int8_refusal(1.0, 60, 0.99, "agrees with", "model.onnx") is None
    True
    """
    if agreement >= minimum:
        return None
    return (
        f"int8 model {agrees_with} fp32 on {agreement:.1%} of {images} sample images, below the {minimum:.0%} "
        f"minimum, so it was not saved. Calibrate with more images like the ones you will classify "
        f"(--calibration-dir), or deploy {fp32_path} (fp32)"
    )


def _refuse_disagreeing_int8(report: ExportReport, variant: VariantReport, classifier, fp32_path) -> str | None:
    """Delete an int8 model that fails `int8_refusal` and return the reason (None when it is kept)."""
    reason = int8_refusal(
        variant.agreement, report.sample_images, report.min_int8_agreement, classifier.task.agrees_with, fp32_path
    )
    if reason is None:
        return None
    path = Path(variant.path)
    for file in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        file.unlink(missing_ok=True)
    variant.path = None
    runtime = "OpenVINO " if path.suffix == ".xml" else ""
    report.notes.append(
        f"{runtime}int8 model refused: {classifier.task.agreement_kind} agreement below min_int8_agreement"
    )
    return f"{runtime}{reason}"


def _save(report: ExportReport, out: Path) -> None:
    (out / "export_report.json").write_text(report.to_json() + "\n")
