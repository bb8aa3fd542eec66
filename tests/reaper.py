"""Start a launcher, signal it once training is under way, and account for every process it started.

    python reaper.py SIGNAL READY_GLOB [--load N] -- COMMAND...

Runs as a child subreaper (Linux), so training processes orphaned by the launcher's death become
its children instead of PID 1's: it can wait for them, read their exit codes and find any left
running. Prints one JSON line: the launcher's exit code, each other reaped process's exit code,
the command lines of processes still alive after `PATIENCE` seconds (then killed), and the seconds
from the signal until each process ended. `--load N` keeps N busy processes running from just
before the signal to the end, as on a machine where other jobs compete for the cores.
"""

import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

PR_SET_CHILD_SUBREAPER = 36
#: A hang guard, not a measurement: a graceful stop of the tiny test model takes a few seconds.
PATIENCE = 120


def _name(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return str(process.pid)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _remember(names: dict) -> dict:
    """Add the command lines of live descendants: a dead one (a zombie) no longer has one."""
    for process in psutil.Process().children(recursive=True):
        name = _name(process)
        if " " in name:
            names.setdefault(process.pid, name)
    return names


def _burn() -> None:
    while True:
        pass


def main(signal_name: str, ready: Path, command: list[str], load: int = 0) -> dict:
    """`ready` is a glob (e.g. OUT/checkpoint-*): a single checkpoint may be rotated away between two looks."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    launcher = subprocess.Popen(command)
    while not any(ready.parent.glob(ready.name)):
        if launcher.poll() is not None:
            return {"error": f"launcher exited with {launcher.returncode} before {ready} appeared"}
        time.sleep(0.2)
    names = _remember({})
    burners = [multiprocessing.get_context("fork").Process(target=_burn, daemon=True) for _ in range(load)]
    for burner in burners:
        burner.start()
    signalled = time.monotonic()
    launcher.send_signal(getattr(signal, signal_name))
    busy = {burner.pid for burner in burners}
    codes, deadline = {}, signalled + PATIENCE
    ended_at = {}
    while time.monotonic() < deadline:
        _remember(names)
        for pid in names:  # a process the launcher reaps itself is seen here as a zombie, then gone
            if pid not in ended_at and pid not in busy and not _running(pid):
                ended_at[pid] = round(time.monotonic() - signalled, 1)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left
        if pid == 0:
            if all(child.pid in busy for child in psutil.Process().children(recursive=True)):
                break  # nothing left but the load
            time.sleep(0.2)
            continue
        codes[names.get(pid, str(pid))] = os.waitstatus_to_exitcode(status)
        ended_at.setdefault(pid, round(time.monotonic() - signalled, 1))
    for burner in burners:
        burner.kill()
        burner.join()
    left = psutil.Process().children(recursive=True)
    for process in left:
        process.kill()
    return {
        "launcher": codes.pop(names.get(launcher.pid, str(launcher.pid)), None),
        "orphans": codes,
        "left": [_name(process) for process in left],
        "ended_after": {names.get(pid, str(pid)): seconds for pid, seconds in ended_at.items()},
    }


if __name__ == "__main__":
    split = sys.argv.index("--")
    load = int(sys.argv[sys.argv.index("--load") + 1]) if "--load" in sys.argv[:split] else 0
    report = main(sys.argv[1], Path(sys.argv[2]), sys.argv[split + 1 :], load)
    print("REAPER " + json.dumps(report), flush=True)
