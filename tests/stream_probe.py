"""Run under `accelerate launch`: stream a 40-image dataset and record which samples each rank/worker sees.

Writes OUT/seen.json on rank 0: the sample seeds of one epoch gathered from every rank, and the
seeds expected if each image is seen exactly once.
"""

import json
import sys
from pathlib import Path

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from conftest import save_tiny_checkpoint, shape_image
from datasets import ClassLabel, Dataset, Features, Image, IterableDatasetDict
from transformers import TrainerCallback

import hf_resnet
from hf_resnet.data.image_datasets import sample_seed
from hf_resnet.data.streaming import sample_key


class RecordFirstEpoch(TrainerCallback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        seen = [int(s) for batch in train_dataloader for s in batch["sample_seed"]]
        everyone = gather_object(seen)
        if PartialState().is_main_process:
            (self.out / "seen.json").write_text(json.dumps(everyone))


def make(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict(
        {"image": [shape_image(i % 3, rng) for i in range(n)], "label": [i % 3 for i in range(n)]}, features=features
    )


if __name__ == "__main__":
    out = Path(sys.argv[1])
    state = PartialState(cpu=True)  # ACCELERATE_USE_CPU: PartialState() alone would see one process
    if state.is_main_process:
        save_tiny_checkpoint(out / "ckpt")
    state.wait_for_everyone()
    train, val = make(40, 1), make(9, 2)
    expected = [
        sample_seed(0, 0, sample_key(item)) for item in train.cast_column("image", Image(decode=False))["image"]
    ]
    if state.is_main_process:
        (out / "expected.json").write_text(json.dumps(expected))
    streams = IterableDatasetDict(
        {"train": train.to_iterable_dataset(num_shards=4), "validation": val.to_iterable_dataset(num_shards=2)}
    )
    hf_resnet.finetune(
        dataset=streams,
        model_name_or_path=str(out / "ckpt"),
        output_dir=str(out / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        dataloader_num_workers=2,
        seed=0,
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        report_to="none",
        callbacks=[RecordFirstEpoch(out)],
    )
    state.destroy_process_group()  # on every rank, not at interpreter exit (see recipes/finetune.py)
