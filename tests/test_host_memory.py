"""Host-memory reuse on CPU: freed blocks stay mapped while training runs, and the usual behaviour comes back after."""

import platform
import resource

import pytest
import torch
from transformers import TrainerCallback

import hf_resnet
from hf_resnet.host_memory import reused_host_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")

#: 64 MB: above any mmap threshold glibc uses, so without the settings it is mapped afresh each time.
BLOCK = 16 * 2**20


def faults_of_a_repeated_block() -> int:
    """Page faults taken by touching a 64 MB tensor allocated right after identical ones were freed.

    Two blocks come and go first: the heap may have to grow, or hand out free chunks whose pages
    an earlier `malloc_trim` returned, before it settles on reusing one block, as training steps do.
    """
    for _ in range(2):
        torch.empty(BLOCK).fill_(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(BLOCK).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_freed_memory_is_reused_inside_and_returned_after():
    pages = BLOCK * 4 // resource.getpagesize()
    assert faults_of_a_repeated_block() >= pages // 2  # the usual way: every block is faulted in again
    with reused_host_memory() as active:
        assert active
        assert faults_of_a_repeated_block() < pages // 100
    assert faults_of_a_repeated_block() >= pages // 2


def test_disabled_changes_nothing():
    with reused_host_memory(enabled=False) as active:
        assert not active
        assert faults_of_a_repeated_block() >= BLOCK * 4 // resource.getpagesize() // 2


class _FaultsDuringTraining(TrainerCallback):
    def __init__(self):
        self.faults = []

    def on_step_end(self, args, state, control, **kwargs):
        self.faults.append(faults_of_a_repeated_block())


@pytest.mark.parametrize("reuse", [True, False])
def test_finetune_on_cpu_reuses_host_memory_while_it_trains(tiny_checkpoint, image_folders, tmp_path, reuse):
    train, val = image_folders
    probe = _FaultsDuringTraining()
    hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=8,
        reuse_host_memory=reuse,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        callbacks=[probe],
    )
    pages = BLOCK * 4 // resource.getpagesize()
    assert len(probe.faults) == 3
    # The heap may first have to grow to hold a 64 MB block; from then on it is reused, step after step.
    later = probe.faults[1:]
    assert all((faults < pages // 100) if reuse else (faults >= pages // 2) for faults in later), probe.faults
    assert faults_of_a_repeated_block() >= pages // 2  # put back when training ended
