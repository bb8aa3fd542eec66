"""What a run writes to the terminal: the plan, the progress bar, one line per evaluation and the result."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint
from test_hub import TOKEN, hub, subprocess_env  # noqa: F401

from hf_resnet.runtime.console import quiet_libraries

#: What the libraries said before the console was quieted, and the false warning on a new folder.
CHATTER = (
    "HTTP Request",
    "LOAD REPORT",
    "incompatible to the `id2label` map",
    "backend is not available",
    "save_pretrained` method is disabled",
    "removed the previous run",
    "eval_recall/",
    "***** train metrics *****",
    "{'loss'",
)
#: A progress bar's redraw (tqdm: `NN%|`, a rate) or the cursor moves between bars.
PROGRESS = re.compile(r"\d+%\||(it|s|B)/s\]|s/it\]|^(\x1b\[A)+$")


def console_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines a person reads on the terminal (stdout and stderr), progress bars and blank lines left out."""
    text = (result.stdout + "\n" + result.stderr).replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.search(line.strip())]


def train(flags: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    run_flags = ["--train_dir", "photos", "--num_train_epochs", "1", "--eval_steps", "0.5"]
    run_flags += ["--per_device_train_batch_size", "4", "--image_cache", "off"]
    env = {**os.environ, **(env or {}), "PYTHONPATH": TEST_PYTHONPATH}
    command = [sys.executable, "-m", "hf_resnet", "train", *run_flags, *flags]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_quiet(result: subprocess.CompletedProcess, output: str) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    lines = console_lines(result)
    assert len(lines) <= 15, "\n".join(lines)
    assert [line for line in lines if any(noise in line for noise in CHATTER)] == []
    evaluations = [line for line in lines if line.startswith("Evaluation at epoch")]
    assert len(evaluations) == 2 and all("accuracy" in line for line in evaluations)
    assert lines[-2].startswith("Held-out accuracy") and lines[-2].endswith(f"results in {output}/")
    assert any("hf_resnet run: model:" in line for line in lines)


def test_a_one_epoch_fine_tune_with_two_evaluations_writes_at_most_15_lines_besides_progress_bars(tmp_path):
    save_tiny_checkpoint(tmp_path / "ckpt")
    make_image_folder(tmp_path / "photos", per_class=8)
    result = train(["--model_name_or_path", "ckpt", "--output_dir", "out"], tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert_quiet(result, "out")
    assert "eval_recall/circle" in (tmp_path / "out" / "trainer_state.json").read_text()  # the files keep them


def test_a_hub_checkpoint_fine_tune_is_as_quiet_and_says_nothing_false_about_a_new_folder(hub, tmp_path):  # noqa: F811
    from huggingface_hub import HfApi

    save_tiny_checkpoint(tmp_path / "ckpt", num_labels=10)  # a head the run replaces: transformers reports it
    HfApi(token=TOKEN).create_repo("user/tiny")
    HfApi(token=TOKEN).upload_folder(folder_path=str(tmp_path / "ckpt"), repo_id="user/tiny")
    make_image_folder(tmp_path / "photos", per_class=8)
    flags = ["--model_name_or_path", "user/tiny", "--output_dir", "new", "--overwrite_output_dir"]
    result = train(flags, tmp_path, subprocess_env(hub, tmp_path / "home", TOKEN))
    assert_quiet(result, "new")
    assert any(
        "New 3-class head on user/tiny (its 10-class head is dropped)" in line for line in console_lines(result)
    )


def test_verbose_lets_the_libraries_chatter_through_and_quiet_keeps_their_warnings():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        for verbose in (False, True):
            quiet_libraries(verbose=verbose)
            logging.getLogger("transformers.modeling_utils").warning("ResNetForImageClassification LOAD REPORT")
            logging.getLogger("transformers.trainer").warning("Something hf_resnet does not say")
        quiet, verbose = stream.getvalue().splitlines()[:1], stream.getvalue().splitlines()[1:]
        assert quiet == ["Something hf_resnet does not say"]
        assert verbose == ["ResNetForImageClassification LOAD REPORT", "Something hf_resnet does not say"]
    finally:
        quiet_libraries(verbose=False)
        transformers_logger.removeHandler(handler)
