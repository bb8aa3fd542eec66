"""Host-memory reuse on CPU: freed blocks stay mapped while training runs, and the usual behaviour comes back after.

Each case runs `host_memory_probe.py` in a fresh interpreter (its docstring says why).
"""

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT, TEST_PYTHONPATH

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")


def probe(name: str, workdir) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "host_memory_probe.py"), name, str(workdir)],
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_inside_and_returned_after(tmp_path):
    faults = probe("context", tmp_path)
    pages = faults["pages"]
    assert faults["plain"] >= pages // 2  # the usual way: every block is faulted in again
    assert faults["active"]
    assert faults["inside"] < pages // 100
    assert faults["after"] >= pages // 2  # the kept memory went back to the OS


def test_disabled_changes_nothing(tmp_path):
    faults = probe("disabled", tmp_path)
    assert not faults["active"]
    assert faults["faults"] >= faults["pages"] // 2


@pytest.mark.parametrize("reuse", [True, False])
def test_finetune_on_cpu_reuses_host_memory_while_it_trains(tmp_path, reuse):
    faults = probe("finetune-reuse" if reuse else "finetune-usual", tmp_path)
    pages = faults["pages"]
    assert len(faults["during"]) == 3
    # The heap may first have to grow to hold a 64 MB block; from then on it is reused, step after step.
    later = faults["during"][1:]
    assert all((f < pages // 100) if reuse else (f >= pages // 2) for f in later), faults["during"]
    assert faults["after"] >= pages // 2  # put back when training ended
