"""Grad-CAM: where in the picture the evidence for a class is.

Grad-CAM (Selvaraju et al., 2017) weights the last stage's feature maps by the mean gradient
of the class logit and keeps the positive part. Third-party Grad-CAM tools expect a model that
returns a plain tensor and break on transformers' output objects; asking the HF model for its
`hidden_states` gives the last stage's output directly, with no hooks and no wrapper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import Picture, load_picture
from .classifier import Classifier, load_classifier


@dataclass
class Explanation:
    """A Grad-CAM heat map with the class it explains and the picture the model saw."""

    heatmap: np.ndarray  #: (H, W) float32 in [0, 1], at the model's input resolution
    image: Image.Image  #: the model's view of the input: after the processor's resize and crop
    target: int
    label: str
    score: float

    def overlay(self, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
        """The heat map coloured with a matplotlib colormap and blended over the model's view.

        >>> Explanation(np.zeros((4, 4)), Image.new("RGB", (4, 4)), 0, "cat", 0.9).overlay().size
        (4, 4)
        """
        from matplotlib import colormaps  # imported here: only overlays need it

        colours = colormaps[colormap](self.heatmap)[..., :3]
        blend = (1.0 - alpha) * np.asarray(self.image, dtype=np.float64) / 255.0 + alpha * colours
        return Image.fromarray(np.clip(np.rint(blend * 255.0), 0, 255).astype(np.uint8))

    def save(self, path: str | os.PathLike, alpha: float = 0.5) -> Path:
        """Write the overlay as a PNG (or any format the file extension names) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.overlay(alpha).save(path)
        return path


def grad_cam(
    model: torch.nn.Module, pixel_values: torch.Tensor, target: int | None = None
) -> tuple[torch.Tensor, int]:
    """Grad-CAM of one image on the last stage of a `ResNetForImageClassification`.

    Returns the map at the input resolution, scaled to [0, 1], and the class it explains
    (the top class when `target` is None).

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1])).eval()
    >>> heatmap, target = grad_cam(model, torch.randn(1, 3, 64, 64))
    >>> tuple(heatmap.shape), float(heatmap.max()) <= 1.0
    ((64, 64), True)
    """
    parameter = next(model.parameters())
    with torch.enable_grad():
        # requires_grad on the input keeps a graph even when every weight is frozen.
        pixel_values = pixel_values.detach().to(parameter.device, parameter.dtype).requires_grad_(True)
        outputs = model(pixel_values=pixel_values, output_hidden_states=True)
        features = outputs.hidden_states[-1]  # output of the last stage, before pooling
        logits = outputs.logits[0]
        target = int(logits.argmax()) if target is None else target
        if not 0 <= target < logits.shape[-1]:
            raise ValueError(f"target {target} is not a class index of this model (0..{logits.shape[-1] - 1})")
        (gradients,) = torch.autograd.grad(logits[target], features)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    cam = torch.nn.functional.interpolate(cam, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[0, 0].float().cpu()
    peak = float(cam.max())
    return (cam / peak if peak > 0 else torch.zeros_like(cam)), target


def _model_view(classifier: Classifier, pixel_values: torch.Tensor) -> Image.Image:
    # Undo the processor's normalisation, so the overlay shows the exact crop that was classified.
    array = pixel_values[0].permute(1, 2, 0).double().numpy()
    processor = classifier.processor
    if getattr(processor, "do_normalize", False):
        array = array * np.asarray(processor.image_std) + np.asarray(processor.image_mean)
    else:
        array = (array - array.min()) / max(array.max() - array.min(), 1e-12)
    return Image.fromarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))


def _target_index(classifier: Classifier, target: int | str | None) -> int | None:
    if isinstance(target, str):
        label2id = {label: int(index) for index, label in classifier.config.id2label.items()}
        if target not in label2id:
            raise ValueError(f"unknown label {target!r}; this model knows {sorted(label2id)}")
        return label2id[target]
    return target


def explain(
    image: Picture,
    model: str | os.PathLike | torch.nn.Module | Classifier = "microsoft/resnet-50",
    target: int | str | None = None,
    out: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Explanation:
    """Grad-CAM heat map for the top class (or `target`, an index or label) of one image.

    Pass `out` to also write the overlay PNG. The map covers the model's view of the image
    (after the processor's resize and centre crop), which `Explanation.image` holds.

    >>> explain("dog.jpg", model="outputs/pets", out="cam.png").label  # doctest: +SKIP
    'dog'
    """
    classifier = load_classifier(model, device=device)
    if classifier.model is None:
        raise ValueError("explain needs the PyTorch model (gradients); use backend='torch'")
    pixel_values = classifier.preprocess([load_picture(image)])
    heatmap, index = grad_cam(classifier.model, pixel_values, _target_index(classifier, target))
    with torch.inference_mode():
        score = float(classifier.scores(classifier.forward(pixel_values))[0, index])
    explanation = Explanation(
        heatmap=heatmap.numpy().astype(np.float32),
        image=_model_view(classifier, pixel_values),
        target=index,
        label=classifier.config.id2label[index],
        score=score,
    )
    if out is not None:
        explanation.save(out)
    return explanation
