"""Atomic checkpoints: a `checkpoint-N` folder holds a whole checkpoint, or does not exist.

The Trainer has no public hook for where a checkpoint is written, so this wraps two of its private
methods; `trainer.PRIVATE_TRAINER_OVERRIDES` lists every private override hf_resnet makes, with the reason.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..config.run_folder import STAGING_DIR, last_intact_checkpoint

#: Checkpoints are written under OUTPUT_DIR/.staging/ and renamed into place once complete, so a
#: `checkpoint-N` folder always holds a whole checkpoint and a kill mid-save is never resumed from.


def disk_full_message(output_dir: str | os.PathLike) -> str:
    """The one line a full disk while saving gets: which folder, which checkpoint is whole, what to do."""
    checkpoint, _ = last_intact_checkpoint(Path(output_dir))
    kept = (
        f"the last checkpoint, {checkpoint.name}, is intact: free space, then rerun with --resume_from_checkpoint last"
        if checkpoint is not None
        else "no checkpoint was completed: free space, then rerun"
    )
    return f"no space left on the disk of --output_dir {output_dir} while saving; {kept}"


#: Free bytes under which a failed write is taken for a full disk when the error itself does not say so.
NEARLY_FULL_BYTES = 64 * 2**20


def is_disk_full(error: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether `error`, raised while writing into `folder`, means its disk is full.

    Python's own writes say so (ENOSPC, EDQUOT); safetensors' Rust writer only in its message ("os error
    28"); `torch.save` not at all (an "unexpected pos" RuntimeError from its zip writer), so for a
    RuntimeError the disk itself is asked.
    """
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if f"os error {errno.ENOSPC})" in str(error) or f"os error {errno.EDQUOT})" in str(error):
        return True
    if not isinstance(error, RuntimeError) or folder is None:
        return False
    try:
        return shutil.disk_usage(_existing(Path(folder))).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


class AtomicCheckpoints:
    """Mixin for a `Trainer` subclass: checkpoints are staged, then published with one rename."""

    _staging = False

    def checkpoint_extras(self, folder: str) -> None:
        """Write more state into a checkpoint before it is published (main process only); none by default."""

    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        """Let the Trainer write the checkpoint into the staging folder, then publish it with one rename."""
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name)
        if self.args.should_save and os.path.isdir(staged):
            shutil.rmtree(staged)  # left by a run killed mid-save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        except Exception as error:
            if self.args.should_save and is_disk_full(error, run_dir):
                shutil.rmtree(staged, ignore_errors=True)  # the part written is useless; its space helps the user
            raise
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # every rank has written its shard / RNG state
        if self.args.should_save:
            self.checkpoint_extras(staged)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(staged, final)
            if not os.listdir(os.path.join(run_dir, STAGING_DIR)):
                os.rmdir(os.path.join(run_dir, STAGING_DIR))  # a finished output folder holds no empty staging area
            best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
            if self.state.best_global_step and os.path.isdir(best):
                self.state.best_model_checkpoint = best  # the Trainer recorded the staging path
                self.state.save_to_json(os.path.join(final, TRAINER_STATE_NAME))
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()
