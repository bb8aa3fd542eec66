"""hf_resnet: fine-tune ResNet image classifiers the Hugging Face way.

>>> import hf_resnet
>>> result = hf_resnet.finetune(model_name_or_path="microsoft/resnet-50", train_dir="photos/train")  # doctest: +SKIP
>>> hf_resnet.classify("cat.jpg", model=result.output_dir)  # doctest: +SKIP
[{'label': 'cat', 'score': 0.97}, ...]
"""

from .api import finetune, parse_args
from .config import DataArguments, ModelArguments, ResNetTrainingArguments
from .data import DataError, ImageData, load_image_data
from .images import ImageError, open_image, to_rgb
from .model import build_model, freeze, unfreeze
from .training import FinetuneResult, ResNetTrainer, run

__version__ = "0.1.0"

__all__ = [
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
