"""Stopping cleanly: Ctrl-C or SIGTERM stops a run at any moment in one line, saving a checkpoint once training
runs; training never outlives its launcher, and an output pipe whose reader died never ends a run."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import logging
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

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


class StopRequested(KeyboardInterrupt):
    """Ctrl-C or SIGTERM where there is no checkpoint to save: before training (data checks, the image cache's
    build), after it (the final evaluation and writing), or in a search's trial, which is failed, not resumed.

    Raised in the main thread at once, so every `finally` and `except BaseException` on the way out runs: the
    image cache removes its partial folder, the output folder's lock is released. A KeyboardInterrupt, so a
    Python caller sees Ctrl-C as ever; the command line prints one line for it (`stop_line`) and exits 130.
    """

    def __init__(self, signum: int, after_training: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.after_training = after_training


#: Whether the run inside `stop_at_once` has begun training (set by `GracefulStop`): a stop says when it came.
_phase = {"training_began": False}


def _stop_at_once(signum, frame):
    raise StopRequested(signum, after_training=_phase["training_began"])


def install_stop_at_once() -> dict:
    """SIGINT and SIGTERM raise `StopRequested` from now on (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _stop_at_once) for signum in GracefulStop.SIGNALS}


@contextlib.contextmanager
def stop_at_once():
    """From a run's first moment: SIGINT and SIGTERM stop it at once with `StopRequested`, except while it trains
    (`GracefulStop` takes over then, and hands back after); the handlers before are restored on the way out."""
    previous, began = install_stop_at_once(), _phase["training_began"]
    _phase["training_began"] = False
    try:
        yield
    finally:
        _phase["training_began"] = began
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_line(stop: StopRequested, prog: str) -> str:
    """The one line a stop outside training prints on the command line."""
    if stop.after_training:
        return (
            f"{prog}: stopped by {stop.signal_name} after training, before all its results were written "
            "(the folder has no recipe.json: it counts as unfinished)"
        )
    return f"{prog}: stopped by {stop.signal_name} before training started"


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
        _phase["training_began"] = True
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


def end_process(code: int) -> NoReturn:
    """Exit now with `code`: the atexit handlers run (loggers, trackers), the interpreter's teardown does not.

    Freeing torch, transformers and datasets module by module takes seconds (1 to 5 on two busy cores), while
    `accelerate launch` sends SIGKILL 5 s after passing on a SIGTERM, and schedulers soon after theirs. After a
    requested stop everything is saved, so the teardown is all there is to skip.
    """
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class _SurvivesClosedPipe:
    """A text stream whose writes go on, into /dev/null, once the pipe's reader is gone.

    accelerate's one-process launcher reads its process's stderr through a pipe, so when the launcher is killed the
    next progress-bar update or warning raises BrokenPipeError (Python ignores SIGPIPE) and the run dies before
    its stop checkpoint. Pointing the file descriptor itself at /dev/null also quiets every other writer of it
    (C++ warnings, other handles of the same stream, the flush at interpreter exit).
    """

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as error:
            self._discard(error)
            return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as error:
            self._discard(error)

    def _discard(self, error: OSError) -> None:
        if error.errno != errno.EPIPE:
            raise error
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        try:
            self._stream.flush()  # what the failed write left in the buffer now goes to /dev/null
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _is_pipe(stream) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def survive_closed_output() -> None:
    """Make stdout and stderr, when they are pipes, keep accepting writes after their reader has gone.

    Logging handlers already holding the raw streams (transformers' own, basicConfig's) are given the
    guarded ones. A terminal or a file is left as it is: only a pipe loses its reader while the run goes on.
    """
    guarded = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _SurvivesClosedPipe) or not _is_pipe(stream):
            continue
        guarded[id(stream)] = _SurvivesClosedPipe(stream)
        setattr(sys, name, guarded[id(stream)])
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for handler in (h for logger in loggers for h in getattr(logger, "handlers", ())):
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in guarded:
            handler.setStream(guarded[id(handler.stream)])
