"""Frozen-feature caching: run the frozen front of the network once per image, then train only what follows.

With the whole backbone frozen (a linear probe) or all of it but the last stage, the frozen
part computes the same thing every epoch and takes nearly all of the step's time. Caching
its output turns every epoch into a pass over the head (or the last stage and the head): on
a CPU, a ResNet-18 head-only epoch is over a hundred times cheaper than a full one.

The price is augmentation. The features are computed once, from the view evaluation uses
(the processor's resize and centre crop), so random crops, flips, auto-augment, random
erasing and mixup/cutmix no longer apply; the head sees the same vectors every epoch. For a
linear head on pretrained features that is the classic linear-probe recipe and loses little;
for training a whole stage on a small dataset, augmentation usually matters more, so this is
opt-in (`--cache_frozen_features`).

The model itself is not changed: `SkipFrozen` makes the frozen parts pass their input
through while the model is in training mode (their input is then their own cached output),
and run normally in evaluation mode, so evaluation, checkpoints and the saved model are
those of the full network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch import nn

from ..data.image_datasets import EvalImages
from ..families import BACKBONE_PARTS, Family, family_of
from ..model.parts import cached_parts

logger = logging.getLogger(__name__)


def _front(model: nn.Module, parts: int, family: Family | None = None) -> list[nn.Module]:
    """The modules of the first `parts` backbone parts, in the order the model's forward runs them."""
    if family is None:  # a direct caller's model; a run passes its plan's family
        family = family_of(model)
    return [module for part in family.feature_front(model)[:parts] for module in part]


@torch.no_grad()
def compute_features(
    model: nn.Module,
    images: torch.utils.data.Dataset,
    parts: int,
    batch_size: int = 64,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    family: Family | None = None,
) -> torch.Tensor:
    """The output of the first `parts` backbone parts for every image, stored as float16 on the CPU.

    With the whole backbone (5 parts) the features are pooled, `(N, C, 1, 1)`: the pooling is
    the next thing the network does and it makes the cache a few kilobytes per image.
    """
    device = next(model.parameters()).device
    if family is None:
        family = family_of(model)
    front, pool = _front(model, parts, family), family.feature_pool(model)
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    chunks = []
    try:
        for batch in loader:
            hidden = batch["pixel_values"].to(device, non_blocking=True)
            if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
                hidden = hidden.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                for module in front:
                    hidden = module(hidden)
                if parts == len(BACKBONE_PARTS):
                    hidden = pool(hidden)
            # float16 halves the cache; its 11-bit mantissa is finer than the bf16 compute GPUs train in.
            chunks.append(hidden.to("cpu", torch.float16))
    finally:
        model.train(was_training)
    features = torch.cat(chunks)
    logger.info(
        "Cached %s features of %d images (%.1f MB)", tuple(features.shape[1:]), len(features), features.nbytes / 1e6
    )
    return features


class FeatureImages(torch.utils.data.Dataset):
    """Cached features and labels, indexed like the images they came from."""

    def __init__(self, features: torch.Tensor, labels: Sequence[int]):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows for {len(labels)} labels")
        self.features, self.labels = features, list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.features[index].float(), "labels": self.labels[index]}


class SkipFrozen:
    """While the model trains, its first `parts` parts pass their input through: it is their cached output.

    In evaluation mode they run as usual, so `Trainer.evaluate` and `predict` see the full
    network on real images. `remove()` restores the model exactly.

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))
    >>> skip = SkipFrozen(model, parts=5)
    >>> model.train()(pixel_values=torch.zeros(2, 8, 1, 1)).logits.shape  # pooled features in: only the head ran
    torch.Size([2, 2])
    >>> skip.remove()
    """

    def __init__(self, model: nn.Module, parts: int, family: Family | None = None):
        self.model, self.modules = model, _front(model, parts, family)
        for module in self.modules:
            module.forward = self._skipping(module.forward)

    def _skipping(self, forward):
        # The model's mode, not the module's: a frozen BatchNorm of the front (timm's stem `bn1` is one) holds
        # itself in eval mode, and must still be skipped while the model trains.
        def maybe_skip(hidden, *args, **kwargs):
            return hidden if self.model.training else forward(hidden, *args, **kwargs)

        return maybe_skip

    def remove(self) -> None:
        for module in self.modules:
            if "forward" in vars(module):
                del module.forward  # back to the class's forward


def cache_frozen_features(
    model: nn.Module, frozen: Sequence[str], split, eval_transform, args, family: Family | None = None
):
    """Compute the frozen front's features of a training split; return (their dataset, the installed `SkipFrozen`).

    `split` is a `datasets.Dataset` with `image` and `label` columns, `args` the run's
    `ResNetTrainingArguments` (device, eval batch size, workers, mixed precision), `family` the model's.
    """
    parts = cached_parts(frozen)  # at least MIN_CACHED_PARTS: see config/checks.py
    autocast_dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    images = EvalImages(split, eval_transform)
    # Each process computes a contiguous share, then every process receives all of them, in order: N devices
    # compute the cache N times faster than one, and every rank trains on the same full cache.
    state = PartialState()  # the run's, set up by the training arguments
    with state.split_between_processes(list(range(len(images)))) as share:
        features = compute_features(
            model.to(args.device),
            torch.utils.data.Subset(images, share),
            parts,
            batch_size=args.per_device_eval_batch_size,
            num_workers=args.dataloader_num_workers,
            autocast_dtype=autocast_dtype,
            family=family,
        )
    if state.num_processes > 1:
        features = torch.cat(gather_object([features]))
    return FeatureImages(features, split["label"]), SkipFrozen(model, parts, family)
