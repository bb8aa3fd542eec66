"""hf_resnet: fine-tune ResNet image classifiers the Hugging Face way.

>>> import hf_resnet
>>> result = hf_resnet.finetune(model_name_or_path="microsoft/resnet-50", train_dir="photos/train")  # doctest: +SKIP
>>> hf_resnet.classify("cat.jpg", model=result.output_dir)  # doctest: +SKIP
[{'label': 'cat', 'score': 0.97}, ...]
"""

from .api import finetune, parse_args
from .calibration import expected_calibration_error, fit_temperature
from .config import DataArguments, ModelArguments, ResNetTrainingArguments
from .data import DataError, ImageData, load_image_data
from .deployment import ExportError, ExportReport, export
from .gradcam import Explanation, explain
from .hub import PushError, push
from .images import ImageError, open_image, to_rgb
from .inference import classify
from .model import build_model, freeze, unfreeze
from .training import FinetuneResult, ResNetTrainer, run

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
