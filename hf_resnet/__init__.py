"""hf_resnet: fine-tune ResNet image classifiers the Hugging Face way.

>>> import hf_resnet
>>> result = hf_resnet.finetune(model_name_or_path="microsoft/resnet-50", train_dir="photos/train")  # doctest: +SKIP
>>> hf_resnet.classify("cat.jpg", model=result.output_dir)  # doctest: +SKIP
[{'label': 'cat', 'score': 0.97}, ...]
"""

from .data.arguments import DataArguments
from .data.images import ImageError, open_image, to_rgb
from .data.sources import DataError, ImageData, load_image_data
from .hub.push import PushError, push
from .inference.classifier import classify
from .inference.gradcam import Explanation, explain
from .inference.onnx_export import ExportError, ExportReport, export
from .model.arguments import ModelArguments
from .model.build import build_model
from .model.freezing import freeze, unfreeze
from .training.arguments import ResNetTrainingArguments
from .training.calibration import expected_calibration_error, fit_temperature
from .training.recipe import finetune, parse_args
from .training.run import FinetuneResult, run
from .training.trainer import ResNetTrainer

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "ExportError",
    "ExportReport",
    "PushError",
    "classify",
    "expected_calibration_error",
    "explain",
    "export",
    "fit_temperature",
    "push",
    "DataArguments",
    "DataError",
    "FinetuneResult",
    "ImageData",
    "ImageError",
    "ModelArguments",
    "ResNetTrainer",
    "ResNetTrainingArguments",
    "build_model",
    "finetune",
    "freeze",
    "load_image_data",
    "open_image",
    "parse_args",
    "run",
    "to_rgb",
    "unfreeze",
]
