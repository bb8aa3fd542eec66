"""Run as a script: count page faults of repeated 64 MB allocations in one scenario; print them as JSON.

Each scenario runs in a fresh interpreter: glibc serves a large request from any big enough
free chunk already in the heap, so in a process that ran other tests a "usual" allocation may
land on resident pages, or a reused one on pages an earlier `malloc_trim` gave back.

    python tests/host_memory_probe.py context|disabled|finetune-reuse|finetune-usual WORKDIR
"""

import json
import resource
import sys
from pathlib import Path

import torch
from conftest import make_image_folder, save_tiny_checkpoint
from transformers import TrainerCallback

import hf_resnet
from hf_resnet.runtime.host_memory import reused_host_memory

#: 64 MB: above any mmap threshold glibc uses, so without the settings it is mapped afresh each time.
BLOCK = 16 * 2**20
PAGES = BLOCK * 4 // resource.getpagesize()


def faults_of_a_repeated_block(tries: int = 3) -> int:
    """Page faults taken by touching a 64 MB tensor allocated right after identical ones were freed.

    Two blocks come and go first: the heap may have to grow before it settles on reusing one
    block, as training steps do. The fewest faults of `tries` such blocks: a reused block was
    seen faulted in whole about once in ten suite runs (cause not pinned down; the kernel's
    proactive reclaim, kdamond on this machine, is one candidate), while the usual allocator
    faults in every page of every block.
    """
    for _ in range(2):
        torch.empty(BLOCK).fill_(1)
    counts = []
    for _ in range(tries):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(BLOCK).fill_(1)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts)


def faults_of_a_fresh_block() -> int:
    """Page faults taken by touching one 64 MB tensor, with no block allocated just before it.

    After `reused_host_memory` exits, the kept memory has been handed back to the OS, so this
    block faults in whether it comes from a new mapping or from the trimmed heap.
    """
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(BLOCK).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


class FaultsDuringTraining(TrainerCallback):
    def __init__(self):
        self.faults = []

    def on_step_end(self, args, state, control, **kwargs):
        self.faults.append(faults_of_a_repeated_block())


def finetune(workdir: Path, reuse: bool) -> dict:
    train = make_image_folder(workdir / "train", per_class=8)
    probe = FaultsDuringTraining()
    hf_resnet.finetune(
        model_name_or_path=str(save_tiny_checkpoint(workdir / "ckpt")),
        train_dir=str(train),
        validation_split=0.25,
        output_dir=str(workdir / "out"),
        max_steps=3,
        per_device_train_batch_size=8,
        reuse_host_memory=reuse,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        callbacks=[probe],
    )
    return {"during": probe.faults, "after": faults_of_a_fresh_block()}


def scenario(name: str, workdir: Path) -> dict:
    if name == "context":
        plain = faults_of_a_repeated_block()
        with reused_host_memory() as active:
            inside = faults_of_a_repeated_block()
        return {"plain": plain, "active": active, "inside": inside, "after": faults_of_a_fresh_block()}
    if name == "disabled":
        with reused_host_memory(enabled=False) as active:
            return {"active": active, "faults": faults_of_a_repeated_block()}
    if name in ("finetune-reuse", "finetune-usual"):
        return finetune(workdir, reuse=name == "finetune-reuse")
    raise ValueError(f"unknown scenario {name!r}")


if __name__ == "__main__":
    print(json.dumps({"pages": PAGES, **scenario(sys.argv[1], Path(sys.argv[2]))}))
