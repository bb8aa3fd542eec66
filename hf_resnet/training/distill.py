"""Knowledge distillation: a trained teacher's softened outputs as a second target of the training loss.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015): the student (the run's model)
learns from (1 - alpha) x its usual label loss + alpha x T^2 x a divergence between its outputs and the
teacher's, both softened by the temperature T. The T^2 keeps the soft term's gradients at the label term's
scale whatever T is. Single-label outputs are compared as softmax distributions (KL divergence), multi-label
ones class by class as sigmoids (the binary KL divergence: cross-entropy on the teacher's probabilities less
their own entropy, so it is 0 where the student agrees, as the single-label term is).

The teacher sees the very batch the student sees (after augmentation and mixing), in inference mode and under
the run's autocast; each process of a multi-process run holds its own copy, outside DDP. Evaluation keeps the
plain label loss, so a distilled run's figures compare with any other run's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config.checks import ArgumentError
from ..config.plan import Distillation
from ..data.transforms import Geometry, processor_geometry
from ..families import config_labels
from ..families.loading import load_errors, looks_local
from ..tasks import task_for

logger = logging.getLogger(__name__)


def soft_target_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, multi_label: bool = False
) -> torch.Tensor:
    """The distillation term of each image, T^2 x the divergence of the softened student from the softened teacher.

    >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
    >>> soft_target_loss(logits, logits, 4.0).abs().max().item() < 1e-6
    True
    """
    student, teacher = student.float() / temperature, teacher.float() / temperature
    if multi_label:
        target = torch.sigmoid(teacher)
        cross = F.binary_cross_entropy_with_logits(student, target, reduction="none")
        entropy = F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
        divergence = (cross - entropy).mean(dim=-1)  # per class, averaged as the task's label loss averages them
    else:
        log_student, log_teacher = F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1)
        divergence = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=-1)
    return divergence * temperature**2


class DistillationLoss:
    """The label loss of the run's task mixed with the teacher's term for one batch; the Trainer's `compute_loss_func`.

    Both terms are reduced alike (summed, then divided by the Trainer's item count, or averaged), so gradient
    accumulation and several processes weigh them as they weigh the label loss alone.
    """

    def __init__(self, plain: Callable, teacher_logits: torch.Tensor, settings: Distillation, multi_label: bool):
        self.plain, self.teacher_logits, self.settings, self.multi_label = plain, teacher_logits, settings, multi_label

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        alpha = self.settings.alpha
        soft = soft_target_loss(logits, self.teacher_logits, self.settings.temperature, self.multi_label)
        if num_items_in_batch is None:
            soft = soft.mean()
        else:
            soft = soft.sum() / torch.as_tensor(num_items_in_batch, device=soft.device)
        if alpha == 1.0:  # the teacher alone: the labels are not read (their loss would only be multiplied by 0)
            return soft
        return (1.0 - alpha) * self.plain(outputs, labels, num_items_in_batch=num_items_in_batch) + alpha * soft


class Teacher:
    """The teacher network of a run, in inference mode, fed the student's batches adapted to its preprocessing."""

    def __init__(self, model: torch.nn.Module, settings: Distillation, multi_label: bool, adapt=None, order=None):
        self.model, self.settings, self.multi_label = model, settings, multi_label
        #: Turns the student's pixel values into the teacher's (its size and normalisation), or None: the same.
        self.adapt = adapt
        #: The teacher's output index of each of the student's classes, where the two list them in other orders.
        self.order = order

    @torch.no_grad()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for the student's batch, in the student's class order; no gradient."""
        if self.adapt is not None:
            pixel_values = self.adapt(pixel_values)
        logits = self.model(pixel_values=pixel_values).logits
        return logits if self.order is None else logits[:, self.order]

    def loss(self, plain: Callable, pixel_values: torch.Tensor) -> DistillationLoss:
        """The loss of one training batch: `plain` (the task's label loss) mixed with the teacher's term on it."""
        return DistillationLoss(plain, self.logits(pixel_values), self.settings, self.multi_label)


def teacher_base_model(name: str, revision: str | None = None) -> str | None:
    """How the teacher's own weights started (its recipe.json's `base_model`), where it is an hf_resnet run."""
    try:
        if looks_local(name):
            file = Path(name).expanduser() / "recipe.json"
        else:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(os.fspath(name), "recipe.json", revision=revision))
        return json.loads(file.read_text(encoding="utf-8")).get("base_model")
    except Exception:  # another tool's checkpoint (no recipe.json), or the Hub unreachable: the card says less
        return None


def _class_order(name: str, teacher_labels: list[str], labels: list[str]) -> list[int] | None:
    if teacher_labels == list(labels):
        return None
    if sorted(teacher_labels) == sorted(labels):
        return [teacher_labels.index(label) for label in labels]
    shown = ", ".join(teacher_labels[:8]) + (", ..." if len(teacher_labels) > 8 else "")
    ours = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
    raise ArgumentError(
        "teacher",
        name,
        f"was trained on other classes ({len(teacher_labels)}: {shown}) than this run's data has ({len(labels)}: "
        f"{ours}); distil with a teacher trained on the same classes",
    )


def _adapter(student: Geometry, teacher: Geometry):
    """(function from the student's pixel values to the teacher's, what it does for the plan), or (None, "as is")."""
    resize = (student.height, student.width) != (teacher.height, teacher.width)
    renormalise = (student.mean, student.std) != (teacher.mean, teacher.std)
    if not resize and not renormalise:
        return None, "the student's batch as is"
    said = []
    if resize:
        said.append(f"resized to {teacher.height}x{teacher.width}")
    if renormalise:
        said.append("renormalised to its mean and std")

    def adapt(pixel_values: torch.Tensor) -> torch.Tensor:
        if renormalise:
            shape = (1, -1, 1, 1)
            device, dtype = pixel_values.device, pixel_values.dtype
            mean_s, std_s, mean_t, std_t = (
                torch.tensor(values, device=device, dtype=dtype).view(shape)
                for values in (student.mean, student.std, teacher.mean, teacher.std)
            )
            pixel_values = (pixel_values * std_s + mean_s - mean_t) / std_t
        if resize:
            pixel_values = F.interpolate(
                pixel_values, size=(teacher.height, teacher.width), mode="bilinear", antialias=True
            )
        return pixel_values

    return adapt, "the student's batch " + " and ".join(said)


def load_teacher(
    settings: Distillation,
    labels: list[str],
    problem_type: str,
    student: Geometry,
    device: torch.device,
    memory_format=torch.contiguous_format,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> tuple[Teacher, Distillation]:
    """The run's teacher on `device`, checked against the data's classes and problem type; the settings completed.

    Raises `ArgumentError` naming `--teacher` for a teacher of other classes or another problem type, and
    `ModelLoadError` for one that does not load.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    name = settings.teacher
    hub = {"revision": revision, "cache_dir": cache_dir}
    with load_errors(name, "--teacher"):
        config = AutoConfig.from_pretrained(name, **hub)
    task = task_for(config)
    if task.problem_type != problem_type:
        raise ArgumentError(
            "teacher",
            name,
            f"is a {task.name.lower()} classifier, but this run's data is {task_for(problem_type).name.lower()}; "
            "distil with a teacher of the same kind",
        )
    order = _class_order(name, config_labels(config.to_dict()), labels)
    with load_errors(name, "--teacher"):
        model = AutoModelForImageClassification.from_pretrained(name, config=config, **hub)
        processor = AutoImageProcessor.from_pretrained(name, **hub)
    model.requires_grad_(False)
    model = model.to(device=device, memory_format=memory_format).eval()
    adapt, inputs = _adapter(student, processor_geometry(processor))
    settings = settings.completed(teacher_base_model(name, revision), inputs)
    return Teacher(model, settings, task.multi_hot, adapt, order), settings
