"""Run under `accelerate launch`: compute the frozen-feature cache of a 23-image split on every rank.

Writes OUT/features.pt (the cache rank 0 ends up with) and OUT/shares.json (how many images
each rank pushed through the backbone), so the test can check that the ranks split the work
and still all hold the whole cache, in dataset order.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from conftest import save_tiny_checkpoint, shape_image
from datasets import ClassLabel, Dataset, Features, Image
from transformers import AutoImageProcessor, ResNetForImageClassification

import hf_resnet
from hf_resnet.data.transforms import build_eval_transform
from hf_resnet.families import BACKBONE_PARTS
from hf_resnet.training import frozen_features as feature_cache


def split(n: int) -> Dataset:
    rng = np.random.default_rng(7)
    schema = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict(
        {"image": [shape_image(i % 3, rng) for i in range(n)], "label": [i % 3 for i in range(n)]}, features=schema
    )


if __name__ == "__main__":
    out = Path(sys.argv[1])
    # The training arguments set up the process group (PartialState() alone ignores ACCELERATE_USE_CPU).
    args = hf_resnet.ResNetTrainingArguments(
        output_dir=str(out / "run"), per_device_eval_batch_size=4, report_to="none"
    )
    state = PartialState()
    assert state.num_processes == args.world_size
    if state.is_main_process:
        save_tiny_checkpoint(out / "ckpt")
    state.wait_for_everyone()
    shares = []
    compute = feature_cache.compute_features

    def counting(model, images, *args, **kwargs):
        shares.append(len(images))
        return compute(model, images, *args, **kwargs)

    feature_cache.compute_features = counting
    model = ResNetForImageClassification.from_pretrained(out / "ckpt")
    transform = build_eval_transform(AutoImageProcessor.from_pretrained(out / "ckpt"))
    dataset, skip = feature_cache.cache_frozen_features(model, list(BACKBONE_PARTS), split(23), transform, args)
    everyone = gather_object(shares)
    if state.is_main_process:
        (out / "shares.json").write_text(json.dumps({"world_size": args.world_size, "shares": everyone}))
        torch.save(dataset.features, out / "features.pt")
    state.wait_for_everyone()
    state.destroy_process_group()  # together, not at interpreter exit (see recipes/finetune.py)
