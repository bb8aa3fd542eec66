"""Stopping cleanly: Ctrl-C or SIGTERM saves a checkpoint, and training never outlives its launcher."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


#: How a process started by a launcher looks in its parent's command line (`accelerate launch`, torchrun).
LAUNCHER_NAMES = {"accelerate", "torchrun"}
LAUNCHER_MODULES = {
    "accelerate.commands.launch",
    "accelerate.commands.accelerate_cli",
    "torch.distributed.run",
    "torch.distributed.launch",
}
#: linux/prctl.h: deliver a signal to this process when the thread that started it exits.
PR_SET_PDEATHSIG = 1


def _launched_by(parent_pid: int) -> bool:
    try:
        arguments = Path(f"/proc/{parent_pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [argument.decode(errors="replace") for argument in arguments]
    return any(Path(word).name in LAUNCHER_NAMES or word in LAUNCHER_MODULES for word in words)


def stop_with_launcher() -> bool:
    """Ask Linux for SIGTERM when the launcher that started this process dies, whatever killed it.

    `accelerate launch` (one process) exits on SIGINT/SIGTERM without signalling its child, and a
    SIGKILLed torchrun agent signals nobody, so training would go on under PID 1 for hours. SIGTERM
    goes through `GracefulStop` once training runs (checkpoint, exit 130) and ends the process before.
    A process started from a shell is left alone: `nohup python recipes/finetune.py &` must outlive it.
    """
    parent = os.getppid()
    if not sys.platform.startswith("linux") or not _launched_by(parent):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): training outlives its launcher", ctypes.get_errno())
        return False
    if os.getppid() != parent:  # the launcher died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
    return True


class GracefulStop(TrainerCallback):
    """First Ctrl-C (SIGINT) or SIGTERM: finish the step, save a checkpoint, stop. A later Ctrl-C aborts.

    SIGTERM is what schedulers (SLURM, Kubernetes) send before killing a preempted job, and what a
    process started by a launcher gets when the launcher dies (`stop_with_launcher`). With several
    processes the request is all-reduced each step, so every rank stops at the same step. Signals in
    the first `REPEAT_WINDOW` seconds are the same request arriving twice (a terminal's Ctrl-C reaches
    both the launcher and its children, then the launcher forwards it or dies), not a second Ctrl-C.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_WINDOW = 2.0

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: dict = {}
        self._first_at = 0.0
        self._released = False

    def _handle(self, signum, frame):
        now = time.monotonic()
        repeat = self.requested and now - self._first_at <= self.REPEAT_WINDOW
        if repeat or (self.requested and signum == signal.SIGTERM and not self._released):
            return  # the same request again, or a scheduler repeating itself while the checkpoint is saved
        if self.requested:  # a later Ctrl-C during training, or any signal once the results are saved
            previous = self._previous.get(signum, signal.SIG_DFL)
            self._restore()
            if signum == signal.SIGINT and not self._released:
                raise KeyboardInterrupt
            if callable(previous):
                return previous(signum, frame)
            os.kill(os.getpid(), signum)  # as if this handler had never been there
            return
        self.requested, self._first_at = True, now
        logger.warning(
            "%s received: finishing this step and saving a checkpoint (Ctrl-C again to abort).",
            signal.Signals(signum).name,
        )

    def release(self):
        """Hand SIGINT and SIGTERM back to the handlers from before training, once the run has saved its results.

        After a requested stop, repeats still arriving (a dying launcher signals once per exiting
        thread, late when the machine is loaded) are swallowed for `REPEAT_WINDOW` seconds from now,
        so a command line that saved its results exits with 130 rather than by a stray SIGTERM; any
        later signal goes to the previous handler.
        """
        self._released = True
        if not self.requested:
            self._restore()
        else:
            self._first_at = time.monotonic()

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.requested
        if args.world_size > 1:
            flag = torch.tensor(float(stop), device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            self.requested, self.stopped_at = True, state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        # After a requested stop the handlers stay until the run has saved its results (`release`): a launcher's
        # death can signal twice, once per exiting thread, and the second must not kill the process mid-save.
        if not self.requested:
            self.release()
