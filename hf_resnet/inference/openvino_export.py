"""OpenVINO IR (and NNCF int8) beside the ONNX file: usually the fastest runtime for a ResNet on an x86 CPU.

The IR is converted from the checked ONNX file, so it inherits its dynamic batch, height and width, and
is checked against PyTorch the same way. Its int8 model is NNCF's post-training quantization calibrated
on images, and is kept or refused by the same agreement rule as ONNX Runtime's int8 model
(`onnx_export.refuse_disagreeing_int8`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

#: What the [openvino] extra installs: the runtime and converter, and NNCF for int8.
OPENVINO_MODULES = ("openvino", "nncf")
#: The IR's graph; its weights are the `.bin` file of the same name beside it.
OPENVINO_FILE_NAME = "model.xml"
OPENVINO_INT8_NAME = "model_int8.xml"
INSTALL_HINT = "pip install 'hf_resnet[openvino]'"


def missing_openvino() -> list[str]:
    """The [openvino] extra's modules that cannot be imported (none when it is installed)."""
    from .onnx_export import missing_modules

    return missing_modules(OPENVINO_MODULES)


def ir_size_mb(xml: Path) -> float:
    """Size on disk of an IR: its graph and its weights."""
    return round(sum(p.stat().st_size for p in (xml, xml.with_suffix(".bin")) if p.is_file()) / 1e6, 2)


def convert(onnx_path: str | os.PathLike, xml_path: str | os.PathLike) -> Path:
    """Write the ONNX classifier as an fp32 OpenVINO IR (weights kept fp32: parity is checked against fp32)."""
    import openvino as ov

    xml_path = Path(xml_path)
    ov.save_model(ov.convert_model(os.fspath(onnx_path)), os.fspath(xml_path), compress_to_fp16=False)
    return xml_path


def quantize_int8(xml_path: str | os.PathLike, out_path: str | os.PathLike, calibration: torch.Tensor) -> Path:
    """NNCF post-training int8 quantization of an IR, activation ranges measured on `calibration` (N, 3, H, W)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(os.fspath(xml_path))
    batches = [chunk.numpy().astype(np.float32) for chunk in calibration.split(8)]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches),
        subset_size=len(batches),  # every calibration batch (NNCF counts dataset items), not its default 300
        preset=nncf.QuantizationPreset.PERFORMANCE,
    )
    out_path = Path(out_path)
    ov.save_model(quantized, os.fspath(out_path))
    return out_path


def openvino_runner(xml_path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """pixel_values -> logits with the IR compiled for the CPU, in fp32 arithmetic.

    OpenVINO's CPU plugin runs fp32 layers in bf16 where the CPU has bf16 instructions, which moves logits
    by about 1e-2; an fp32 IR is promised to answer as PyTorch fp32 does, so the hint keeps it fp32 (an int8
    model's quantized layers run int8 either way).
    """
    import openvino as ov

    compiled = ov.Core().compile_model(os.fspath(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output(0)

    def run(pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(compiled(pixel_values.numpy().astype(np.float32))[output]))

    return run
