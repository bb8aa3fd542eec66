"""hf_resnet: fine-tune ResNet image classifiers the Hugging Face way.

    import hf_resnet
    result = hf_resnet.finetune(model_name_or_path="microsoft/resnet-50", train_dir="photos/train")
    hf_resnet.classify("cat.jpg", model=result.output_dir)  # [{'label': 'cat', 'score': 0.97}, ...]

The public names below are imported on first use, so `import hf_resnet` is instant and
`hf_resnet.classify` loads only what inference needs, never the training stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    # training
    "finetune": "training.recipe",
    "distill": "training.recipe",
    "parse_args": "config.parsing",
    "run": "training.run",
    "FinetuneResult": "training.run",
    "ResNetTrainer": "training.trainer",
    "ResNetTrainingArguments": "config.arguments",
    "expected_calibration_error": "tasks.calibration",
    "fit_temperature": "tasks.calibration",
    # tuning
    "lr_find": "tuning.lr_find",
    "LrFindResult": "tuning.lr_find",
    "search": "tuning.search",
    "SearchResult": "tuning.search",
    # evaluation
    "evaluate": "evaluation.run",
    "EvaluationError": "evaluation.run",
    "EvaluationResult": "evaluation.run",
    # data
    "DataArguments": "data.arguments",
    "DataError": "data.sources",
    "ImageData": "data.sources",
    "load_image_data": "data.sources",
    "ImageError": "data.images",
    "open_image": "data.images",
    "to_rgb": "data.images",
    # model
    "ModelArguments": "model.arguments",
    "build_model": "model.build",
    "freeze": "model.freezing",
    "unfreeze": "model.freezing",
    # inference
    "classify": "inference.classifier",
    "Explanation": "inference.gradcam",
    "explain": "inference.gradcam",
    "explain_labels": "inference.gradcam",
    "ExportError": "inference.onnx_export",
    "ExportReport": "inference.onnx_export",
    "export": "inference.onnx_export",
    # deployment
    "deploy_report": "deployment.report",
    "DeploymentError": "deployment.report",
    "DeploymentReport": "deployment.report",
    # hub
    "PushError": "hub.push",
    "push": "hub.push",
}

__all__ = [
    "DataArguments",
    "DataError",
    "DeploymentError",
    "DeploymentReport",
    "Explanation",
    "EvaluationError",
    "EvaluationResult",
    "ExportError",
    "ExportReport",
    "FinetuneResult",
    "ImageData",
    "LrFindResult",
    "ImageError",
    "ModelArguments",
    "PushError",
    "ResNetTrainer",
    "ResNetTrainingArguments",
    "SearchResult",
    "build_model",
    "classify",
    "deploy_report",
    "distill",
    "expected_calibration_error",
    "evaluate",
    "explain",
    "explain_labels",
    "export",
    "finetune",
    "fit_temperature",
    "freeze",
    "load_image_data",
    "lr_find",
    "open_image",
    "parse_args",
    "push",
    "run",
    "search",
    "to_rgb",
    "unfreeze",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_resnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what static tools and IDEs see
    from .config.arguments import ResNetTrainingArguments
    from .config.parsing import parse_args
    from .data.arguments import DataArguments
    from .data.images import ImageError, open_image, to_rgb
    from .data.sources import DataError, ImageData, load_image_data
    from .deployment.report import DeploymentError, DeploymentReport, deploy_report
    from .evaluation.run import EvaluationError, EvaluationResult, evaluate
    from .hub.push import PushError, push
    from .inference.classifier import classify
    from .inference.gradcam import Explanation, explain, explain_labels
    from .inference.onnx_export import ExportError, ExportReport, export
    from .model.arguments import ModelArguments
    from .model.build import build_model
    from .model.freezing import freeze, unfreeze
    from .tasks.calibration import expected_calibration_error, fit_temperature
    from .training.recipe import distill, finetune
    from .training.run import FinetuneResult, run
    from .training.trainer import ResNetTrainer
    from .tuning.lr_find import LrFindResult, lr_find
    from .tuning.search import SearchResult, search
