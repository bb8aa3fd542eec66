"""Grad-CAM: where in the picture the evidence for a class is.

Grad-CAM (Selvaraju et al., 2017) weights the last stage's feature maps by the mean gradient
of the class logit and keeps the positive part. Third-party Grad-CAM tools expect a model that
returns a plain tensor and break on transformers' output objects; here the model's family names
its last stage (`hf_resnet.families`) and a forward hook keeps that stage's output for one pass,
so any supported network is explained the same way, with no wrapper.

A multi-label model's labels are independent yes/no answers, so each label of an image's set
has its own map (`explain_labels`). The target is still the label's logit: its sigmoid score is
monotonic in it, and the logit's gradient does not vanish where the score saturates near 1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config.checks import image_write_problem
from ..data.images import Picture, load_picture
from ..data.transforms import processor_geometry
from ..families import family_of
from .classifier import Classifier, load_classifier

#: Characters of a label kept out of a file name: separators, spaces and the like.
UNSAFE_IN_NAMES = re.compile(r"[^\w.-]+")


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
    """Grad-CAM of one image on the last stage of a model of a supported family.

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
        kept = []
        hook = family_of(model).gradcam_layer(model).register_forward_hook(lambda _m, _i, out: kept.append(out))
        try:
            logits = model(pixel_values=pixel_values).logits[0]
        finally:
            hook.remove()
        features = kept[-1]  # output of the last stage, before pooling
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
    geometry = processor_geometry(classifier.processor)
    if getattr(classifier.processor, "do_normalize", True):  # timm's processors always normalise
        array = array * np.asarray(geometry.std) + np.asarray(geometry.mean)
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


def _explanation(classifier: Classifier, pixel_values: torch.Tensor, target: int | None) -> Explanation:
    heatmap, index = grad_cam(classifier.model, pixel_values, target)
    with torch.inference_mode():
        score = float(classifier.scores(classifier.forward(pixel_values))[0, index])
    return Explanation(
        heatmap=heatmap.numpy().astype(np.float32),
        image=_model_view(classifier, pixel_values),
        target=index,
        label=classifier.config.id2label[index],
        score=score,
    )


def check_out(out: str | os.PathLike | None) -> None:
    """Refuse, before the model loads, an overlay path that cannot be written (a folder, no image extension)."""
    if out is not None and (problem := image_write_problem(out)):
        raise ValueError(f"--out {os.fspath(out)}: {problem}")


def _loaded(model, device) -> Classifier:
    classifier = load_classifier(model, device=device)
    if classifier.model is None:
        raise ValueError("explain needs the PyTorch model (gradients); use backend='torch'")
    return classifier


def explain(
    image: Picture,
    model: str | os.PathLike | torch.nn.Module | Classifier = "microsoft/resnet-50",
    target: int | str | None = None,
    out: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Explanation:
    """Grad-CAM heat map for the top class (or `target`, an index or label) of one image.

    Pass `out` to also write the overlay PNG. The map covers the model's view of the image
    (after the processor's resize and centre crop), which `Explanation.image` holds. For every
    label of a multi-label model's answer, see `explain_labels`.
    """
    check_out(out)
    classifier = _loaded(model, device)
    pixel_values = classifier.preprocess([load_picture(image)])
    explanation = _explanation(classifier, pixel_values, _target_index(classifier, target))
    if out is not None:
        explanation.save(out)
    return explanation


def label_set(classifier: Classifier, pixel_values: torch.Tensor) -> list[int]:
    """The labels `classify` answers with for one image, best first: a multi-label model's labels at or above
    their thresholds (the top one when none is, so there is always something to show), else the top class.
    """
    with torch.inference_mode():
        scores = classifier.scores(classifier.forward(pixel_values))[0]
    return classifier.task.label_set(scores, classifier.config)


def labelled_path(out: str | os.PathLike, label: str) -> Path:
    """Where the overlay of one label of several goes: `cam.png` -> `cam_<label>.png` (unsafe characters as _).

    >>> labelled_path("maps/cam.png", "red car/truck")
    PosixPath('maps/cam_red_car_truck.png')
    """
    out, safe = Path(out), UNSAFE_IN_NAMES.sub("_", label)
    return out.with_name(f"{out.stem}_{safe}{out.suffix or '.png'}")


def explain_labels(
    image: Picture,
    model: str | os.PathLike | torch.nn.Module | Classifier = "microsoft/resnet-50",
    out: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> list[Explanation]:
    """One Grad-CAM heat map per label of the image's answer (`label_set`), best first.

    A multi-label image can show several things; one map of the top label would hide where the
    others were seen. With `out`, each overlay is written to `labelled_path(out, label)`.
    """
    check_out(out)
    classifier = _loaded(model, device)
    pixel_values = classifier.preprocess([load_picture(image)])
    explanations = [_explanation(classifier, pixel_values, index) for index in label_set(classifier, pixel_values)]
    if out is not None:
        for explanation in explanations:
            explanation.save(labelled_path(out, explanation.label))
    return explanations
