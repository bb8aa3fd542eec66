"""Start a launcher, signal it once training is under way, and account for every process it started.

    python reaper.py SIGNAL READY_GLOB -- COMMAND...

Runs as a child subreaper (Linux), so training processes orphaned by the launcher's death become
its children instead of PID 1's: it can wait for them, read their exit codes and find any left
running. Prints one JSON line: the launcher's exit code, each other reaped process's exit code,
and the command lines of processes still alive after `PATIENCE` seconds (then killed).
"""

import ctypes
import json
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


def _remember(names: dict) -> dict:
    """Add the command lines of live descendants: a dead one (a zombie) no longer has one."""
    for process in psutil.Process().children(recursive=True):
        name = _name(process)
        if " " in name:
            names.setdefault(process.pid, name)
    return names


def main(signal_name: str, ready: Path, command: list[str]) -> dict:
    """`ready` is a glob (e.g. OUT/checkpoint-*): a single checkpoint may be rotated away between two looks."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    launcher = subprocess.Popen(command)
    while not any(ready.parent.glob(ready.name)):
        if launcher.poll() is not None:
            return {"error": f"launcher exited with {launcher.returncode} before {ready} appeared"}
        time.sleep(0.2)
    names = _remember({})
    launcher.send_signal(getattr(signal, signal_name))
    codes, deadline = {}, time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        _remember(names)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left
        if pid == 0:
            time.sleep(0.2)
            continue
        codes[names.get(pid, str(pid))] = os.waitstatus_to_exitcode(status)
    left = psutil.Process().children(recursive=True)
    for process in left:
        process.kill()
    return {
        "launcher": codes.pop(names.get(launcher.pid, str(launcher.pid)), None),
        "orphans": codes,
        "left": [_name(process) for process in left],
    }


if __name__ == "__main__":
    split = sys.argv.index("--")
    report = main(sys.argv[1], Path(sys.argv[2]), sys.argv[split + 1 :])
    print("REAPER " + json.dumps(report), flush=True)
