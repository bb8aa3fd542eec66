"""An exponential moving average of the weights, kept beside the trained ones (`--ema_decay`).

The weights after the last optimizer step carry the noise of the last few batches; their running
average (Polyak averaging, as timm's `ModelEmaV3` and torchvision's reference scripts keep) often
generalises better, at the cost of one copy of the model and one `lerp` per step. The average is
torch's own `AveragedModel` with `use_buffers=True`, so BatchNorm running statistics are averaged
with the parameters and the averaged network is consistent on its own.

The Trainer knows nothing of it: `WeightAverage` is a callback (updated after each optimizer step,
created once the Trainer has put the model on its device), its state is written into each
checkpoint before the checkpoint is published (`ResNetTrainer.checkpoint_extras`) and read back
when a run resumes, so a resumed run averages exactly as an uninterrupted one. `ResNetTrainer`
evaluates it alongside the raw weights (`eval_ema_*`), and the run keeps whichever of the two is
better on the validation metric (`choose`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

#: The averaged weights (and the number of updates) inside each checkpoint-N folder.
EMA_FILE = "ema.safetensors"


class WeightAverage(TrainerCallback):
    """EMA of every parameter and BatchNorm buffer of `model`, updated after each optimizer step.

    Frozen parts never change, so their average is themselves; a part thawed by gradual
    unfreezing starts averaging from the weights it had while frozen.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.average: AveragedModel | None = None
        self.resume_from: Path | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.average is None:  # the Trainer has moved the model to its device by now
            self.average = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
            self.average.requires_grad_(False)
        if self.resume_from is not None:
            self.load(self.resume_from)

    def on_step_end(self, args, state, control, **kwargs):
        self.average.update_parameters(self.model)

    @property
    def started(self) -> bool:
        return self.average is not None and int(self.average.n_averaged) > 0

    def save(self, folder: str | Path) -> None:
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.average.state_dict().items()}
        save_file(state, str(Path(folder) / EMA_FILE), metadata={"decay": str(self.decay)})

    def load(self, folder: str | Path) -> None:
        path = Path(folder) / EMA_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} holds no {EMA_FILE}: it was saved without --ema_decay, so the run cannot resume with it"
            )
        self.average.load_state_dict(load_file(str(path), device=str(next(self.average.parameters()).device)))

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict, under the model's own names."""
        return self.average.module.state_dict()

    def copy_to(self, model: torch.nn.Module) -> None:
        """Put the averaged weights into `model` in place (its tensors keep their memory layout)."""
        model.load_state_dict(self.weights())

    @contextlib.contextmanager
    def swapped_in(self):
        """Run the body with the averaged weights in the model, then put the trained ones back exactly."""
        trained = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
        self.copy_to(self.model)
        try:
            yield
        finally:
            self.model.load_state_dict(trained)


@dataclass
class AverageChoice:
    """Which weights a run kept, and the validation figures it chose by (recipe.json, the model card)."""

    decay: float
    metric: str
    trained: float
    averaged: float
    kept: str  # "ema" or "trained"


def choose(metrics: dict[str, float], metric: str, greater_is_better: bool, decay: float) -> AverageChoice:
    """Keep the average only where it is strictly better than the trained weights on `metric`.

    >>> choose({"eval_accuracy": 0.90, "eval_ema_accuracy": 0.93}, "accuracy", True, 0.99).kept
    'ema'
    >>> choose({"eval_loss": 0.2, "eval_ema_loss": 0.3}, "loss", False, 0.99).kept
    'trained'
    >>> choose({"eval_loss": 0.3, "eval_ema_loss": 0.2}, "top5_accuracy", True, 0.99).metric
    'loss'
    """
    name = metric.removeprefix("eval_")
    if f"eval_{name}" not in metrics:  # a metric that does not apply here (top-5 with 5 classes): judge by the loss
        name, greater_is_better = "loss", False
    trained, averaged = metrics[f"eval_{name}"], metrics[f"eval_ema_{name}"]
    better = averaged > trained if greater_is_better else averaged < trained
    return AverageChoice(decay, name, trained, averaged, "ema" if better else "trained")
