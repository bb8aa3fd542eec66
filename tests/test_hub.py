"""Pushing to the Hub and loading back, against the local Hub of `hub_server.py` (no internet).

The push runs in this process with `huggingface_hub.constants` pointed at the local server;
downloads and the `hf-resnet push` retry run in subprocesses, where `HF_ENDPOINT` is read at
import as it is for a user, with a fresh cache. `HF_HUB_DISABLE_XET=1` selects the LFS path:
the local server has no Xet service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, save_tiny_checkpoint, shape_image, tiny_config
from hub_server import HubServer
from huggingface_hub import constants
from test_card import make_run_folder
from transformers import TrainerState, TrainingArguments

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.hub.push import (
    PushError,
    files_to_push,
    portable_files,
    push,
    push_after_training,
    share_progress_bar_lock,
    trainer_callbacks,
)

TOKEN = "hf_TestTokenThatMustNeverLeak0123456789"

# Loads a model the two ways a user would: from the Hub id (HF_ENDPOINT, empty cache) and, in the same
# process for a like-for-like comparison, from the local output folder.
DOWNLOAD = """
import json, sys
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification
import hf_resnet

image_path, answers = sys.argv[1], {}
for name, source in (("hub", sys.argv[2]), ("local", sys.argv[3])):
    model = AutoModelForImageClassification.from_pretrained(source).eval()
    inputs = AutoImageProcessor.from_pretrained(source)(hf_resnet.open_image(image_path), return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0].tolist()
    answers[name] = {"logits": logits, "classify": hf_resnet.classify(image_path, model=source, top_k=None)}
print(json.dumps(answers))
"""


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A local Hub requiring TOKEN, with this process's huggingface_hub pointed at it."""
    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        yield server


def subprocess_env(hub: HubServer, home: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1")
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    if token:
        env["HF_TOKEN"] = token
    return env


def run_python(code: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def run_command(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a shell command as a user would, with this environment's console scripts (hf-resnet) on PATH."""
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.run(shlex.split(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_with_token(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def assert_hub_matches_local(hub: HubServer, repo_id: str, output_dir: Path) -> None:
    """The Hub holds the output folder as pushed: each file, or its copy with paths relative to the folder."""
    remote = hub.files(repo_id)
    local = portable_files(files_to_push(output_dir), output_dir)
    assert set(remote) - {".gitattributes"} == set(local)
    assert all(
        remote[name] == (data if isinstance(data, bytes) else data.read_bytes()) for name, data in local.items()
    )


def test_finetune_push_then_load_from_the_hub_gives_the_same_predictions(hub, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    train = make_image_folder(tmp_path / "data" / "train", per_class=6, seed=1)
    val = make_image_folder(tmp_path / "data" / "val", per_class=3, seed=2)
    result = hf_resnet.finetune(
        config=tiny_config(),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "run"),
        image_size=32,
        num_train_epochs=2,
        per_device_train_batch_size=6,
        push_to_hub=True,
        hub_model_id="user/tiny-shapes",
        hub_token=TOKEN,  # the Trainer pickles this into training_args.bin: the push must strip it
    )
    output = Path(result.output_dir)

    # The final push holds the whole output (checkpoints stay local); pushes during training came first.
    assert_hub_matches_local(hub, "user/tiny-shapes", output)
    assert {"README.md", "confusion_matrix.png", "training_curves.png", "eval_per_class.json"} <= set(
        hub.files("user/tiny-shapes")
    )
    assert not any(name.startswith("checkpoint-") for name in hub.files("user/tiny-shapes"))
    messages = hub.commit_messages("user/tiny-shapes")
    assert messages[-1] == "End of training"
    assert any(m.startswith("Training in progress, step") for m in messages[1:-1])

    # No token anywhere: output folder (checkpoints included), the Hub, logs.
    assert files_with_token(output) == []
    assert not any(TOKEN.encode() in content for content in hub.files("user/tiny-shapes").values())
    captured = capfd.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err

    # Fresh cache, no token, HF_ENDPOINT only: transformers and hf_resnet.classify load the pushed model.
    image = tmp_path / "probe.png"
    shape_image(1, np.random.default_rng(7)).save(image)
    loaded = run_python(
        DOWNLOAD, [str(image), "user/tiny-shapes", str(output)], subprocess_env(hub, tmp_path / "fresh"), tmp_path
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answers = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert hub.count("GET", r"/user/tiny-shapes/resolve/[^/]+/model\.safetensors$") == 1
    assert answers["hub"]["logits"] == answers["local"]["logits"]  # bit-identical
    assert answers["hub"]["classify"] == answers["local"]["classify"]
    assert answers["hub"]["classify"][0]["label"] in {"circle", "hbar", "vbar"}


def test_push_that_fails_mid_upload_is_completed_by_hf_resnet_push(hub, tmp_path):
    run = make_run_folder(tmp_path / "run")
    weights = sha256(run / "model.safetensors")
    hub.fail("PUT", weights, status=403)  # the upload of the weights is refused after others went through
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    with pytest.raises(PushError) as failure:
        push(run, "user/shapes")

    message = str(failure.value)
    assert "403" in message and "local output is complete" in message
    assert failure.value.retry_command == f"hf-resnet push {run} --repo user/shapes"
    assert message.endswith(failure.value.retry_command)
    assert hub.commit_messages("user/shapes") == ["initial commit"]  # nothing half-committed
    # The other LFS files (the two plots) reached the Hub's storage.
    assert len(hub.lfs_uploads) == 2 and weights not in hub.lfs_uploads
    assert all(path.read_bytes() == content for path, content in before.items())  # nothing lost locally

    retried = run_command(failure.value.retry_command, subprocess_env(hub, tmp_path, TOKEN), tmp_path)

    assert retried.returncode == 0, retried.stderr[-3000:]
    assert TOKEN not in retried.stdout + retried.stderr
    assert retried.stdout.strip().startswith(f"{hub.url}/user/shapes/commit/")
    assert hub.lfs_uploads[2:] == [weights]  # only what was missing went up again
    assert_hub_matches_local(hub, "user/shapes", run)
    assert "checkpoint-8/optimizer.pt" not in hub.files("user/shapes")


def test_server_error_at_commit_then_retry_uploads_nothing_again(hub, tmp_path):
    run = make_run_folder(tmp_path / "run")
    hub.fail("POST", r"/commit/main$", status=500)

    with pytest.raises(PushError, match=r"server error \(500\)") as failure:
        push(run, "user/shapes")
    assert "the retry sends only the rest" in str(failure.value)
    uploaded = list(hub.lfs_uploads)
    assert len(uploaded) == 3  # weights, two plots (no pickle: training_args.bin stays local)

    url = push(run, "user/shapes")

    assert hub.lfs_uploads == uploaded
    assert url.endswith(hub.repos["user/shapes"].branches["main"])
    assert_hub_matches_local(hub, "user/shapes", run)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("bad token", ["401", "HF_TOKEN"]),
        ("no network", ["could not reach http://127.0.0.1:", "Check the network"]),
        ("offline", ["offline mode", "Unset HF_HUB_OFFLINE"]),
        ("read-only token", ["may not write to user/shapes (403", "write access"]),
    ],
)
def test_failed_push_says_what_failed_and_how_to_retry(hub, tmp_path, monkeypatch, case, expected):
    run = make_run_folder(tmp_path / "run", checkpoint=False)
    if case == "bad token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_1234567890")
    elif case == "no network":
        monkeypatch.setattr(constants, "ENDPOINT", closed_port_url())
    elif case == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        hub.fail("POST", r"/api/repos/create$", status=403)

    with pytest.raises(PushError) as failure:
        push(run, "user/shapes")

    message = str(failure.value)
    assert all(text in message for text in expected), message
    assert f"Retry without re-training: hf-resnet push {run} --repo user/shapes" in message
    assert "hf_wrong_token" not in message and TOKEN not in message
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()


def test_push_refuses_an_unfinished_folder_before_any_request(hub, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PushError, match="not a finished run"):
        push(tmp_path / "empty", "user/shapes")
    assert hub.requests == []


def test_push_after_training_raises_with_the_retry_command(hub, tmp_path):
    run = make_run_folder(tmp_path / "run", checkpoint=False)
    hub.fail("POST", r"/api/repos/create$", status=503)
    args = TrainingArguments(
        output_dir=str(run), push_to_hub=True, hub_model_id="user/shapes", hub_token=TOKEN, report_to="none"
    )

    with pytest.raises(PushError, match=r"server error \(503\)") as failure:
        push_after_training(run, args)
    assert str(failure.value).endswith(f"hf-resnet push {run} --repo user/shapes")
    assert TOKEN not in str(failure.value)

    other_process = types.SimpleNamespace(push_to_hub=True, process_index=1, hub_model_id="user/shapes")
    requests = len(hub.requests)
    push_after_training(run, other_process)
    assert len(hub.requests) == requests  # only the main process pushes


@pytest.fixture
def push_run(hub, tmp_path, monkeypatch):
    """The command line of a tiny run that pushes to the local Hub at the end, and its output folder."""
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")
    train = make_image_folder(tmp_path / "train", per_class=8)
    out = tmp_path / "out"
    argv = [
        *("--model_name_or_path", str(checkpoint), "--train_dir", str(train), "--output_dir", str(out)),
        *("--max_steps", "2", "--per_device_train_batch_size", "8", "--save_strategy", "no"),
        *("--eval_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--keep_examples", "false"),
        *("--push_to_hub", "--hub_strategy", "end"),
    ]
    return argv, out


def _error_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("hf-resnet train: error:")]


def test_push_to_hub_checks_the_repo_id_and_the_token_before_any_work(hub, push_run, monkeypatch, capfd):
    from hf_resnet.training import recipe
    from hf_resnet.training import run as run_module

    def work(*args, **kwargs):
        raise AssertionError("work started before the push was refused")

    monkeypatch.setattr(run_module, "load_image_data", work)
    argv, out = push_run
    with socket.socket() as closed:  # a port nothing listens on: a Hub that is down
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    cases = [
        (["--hub_model_id", "bad repo!!"], {}, "--hub_model_id bad repo!!: not a Hub repo id"),
        (["--hub_model_id", "user/tiny", "--hub_token", "hf_wrong_token"], {}, "refused the token (401)"),
        (["--hub_model_id", "user/tiny"], {"ENDPOINT": dead}, f"cannot check the token at {dead}"),
        (["--hub_model_id", "user/tiny"], {"HF_HUB_OFFLINE": True}, "--push_to_hub True: offline mode is on"),
        (["--hub_model_id", "user/tiny"], {"token": None}, "--push_to_hub True: no Hub token"),
    ]
    for flags, setting, message in cases:
        with monkeypatch.context() as patch:
            for name, value in setting.items():
                if name == "token":
                    patch.delenv("HF_TOKEN")
                else:
                    patch.setattr(constants, name, value)
            code = recipe.main([*argv, *flags])
        errors = _error_lines(capfd)
        assert code == 2 and len(errors) == 1 and message in errors[0], (flags, errors)
        assert "hf_wrong_token" not in errors[0]
    assert not out.exists()
    assert hub.count("POST", r"^/api/(repos|models)/") == 0  # only whoami was asked


def test_a_push_that_fails_after_training_exits_1_naming_the_kept_folder_and_the_push_command(hub, push_run, capfd):
    from hf_resnet.training import recipe

    argv, out = push_run
    hub.fail("POST", r"/api/repos/create$", status=503)

    code = recipe.main([*argv, "--hub_model_id", "user/tiny"])

    errors = _error_lines(capfd)
    assert code == 1 and len(errors) == 1, errors
    assert "server error (503)" in errors[0] and "The local output is complete; nothing there was lost." in errors[0]
    assert errors[0].endswith(f"Retry without re-training: hf-resnet push {out} --repo user/tiny")
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()

    push(out, "user/tiny")  # the command's push, once the Hub answers again
    assert_hub_matches_local(hub, "user/tiny", out)


def test_token_is_stripped_from_saved_arguments_and_files_holding_it_are_not_pushed(hub, tmp_path):
    run = make_run_folder(tmp_path / "run", hub_token=TOKEN)
    assert len(files_with_token(run)) == 2  # what the Trainer leaves: training_args.bin, also in the checkpoint

    push(run, "user/shapes")

    assert files_with_token(run) == []
    assert torch.load(run / "training_args.bin", weights_only=False).hub_token is None
    assert not any(TOKEN.encode() in content for content in hub.files("user/shapes").values())

    (run / "notes.txt").write_text(f"token: {TOKEN}")
    commits = len(hub.commit_messages("user/shapes"))
    with pytest.raises(PushError, match="notes.txt contains your Hub token") as failure:
        push(run, "user/shapes")
    assert TOKEN not in str(failure.value)
    assert len(hub.commit_messages("user/shapes")) == commits


@pytest.mark.parametrize(
    "strategy, folder", [("every_save", None), ("checkpoint", "last-checkpoint"), ("all_checkpoints", "checkpoint-8")]
)
def test_checkpoint_pushes_follow_hub_strategy(hub, tmp_path, strategy, folder):
    run = make_run_folder(tmp_path / "run", hub_token=TOKEN)
    args = TrainingArguments(
        output_dir=str(run), push_to_hub=True, hub_model_id="user/ckpt", hub_strategy=strategy, report_to="none"
    )
    (callback,) = trainer_callbacks(args)
    state = TrainerState(global_step=8)

    callback.on_save(args, state, None)
    callback.on_train_end(args, state, None)

    files = hub.files("user/ckpt")
    model_files = {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert model_files <= set(files)
    assert not [name for name in files if name.endswith("training_args.bin")]  # a pickle nothing reads back
    assert files["model.safetensors"] == (run / "checkpoint-8" / "model.safetensors").read_bytes()
    in_folder = {name.split("/", 1)[1] for name in files if folder and name.startswith(f"{folder}/")}
    assert in_folder == (model_files | {"optimizer.pt"} if folder else set())
    assert all("/" not in name for name in files if not folder or not name.startswith(folder))
    assert hub.commit_messages("user/ckpt")[-1] == "Training in progress, step 8"
    assert not any(TOKEN.encode() in content for content in files.values())
    assert not list(run.glob("_*"))  # staging removed
    assert trainer_callbacks(TrainingArguments(output_dir=str(run), push_to_hub=True, hub_strategy="end")) == []


def test_failed_checkpoint_push_warns_and_training_goes_on(hub, tmp_path, caplog):
    run = make_run_folder(tmp_path / "run")
    args = TrainingArguments(output_dir=str(run), push_to_hub=True, hub_model_id="user/ckpt", report_to="none")
    (callback,) = trainer_callbacks(args)
    hub.fail("POST", r"/commit/main$", status=500)

    callback.on_save(args, TrainerState(global_step=8), None)
    callback.on_train_end(args, TrainerState(global_step=8), None)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("checkpoint-8" in w and "server error (500)" in w and "Training goes on" in w for w in warnings)
    assert hub.commit_messages("user/ckpt") == ["initial commit"]


def test_private_repo_on_a_branch(hub, tmp_path):
    run = make_run_folder(tmp_path / "run", checkpoint=False)

    url = push(run, "user/private-shapes", private=True, revision="v1", commit_message="First release")

    repo = hub.repos["user/private-shapes"]
    assert repo.private and url.endswith(repo.branches["v1"])
    assert "model.safetensors" in hub.files("user/private-shapes", "v1")
    assert "model.safetensors" not in hub.files("user/private-shapes", "main")
    assert hub.commit_messages("user/private-shapes")[-1] == "First release"


def test_pushed_files_name_no_local_folder_and_the_published_recipe_reruns_on_other_data(hub, tmp_path):
    base = save_tiny_checkpoint(tmp_path / "alice" / "models" / "tiny")
    photos = tmp_path / "alice" / "photos"
    make_image_folder(photos / "train", per_class=6, seed=1)
    make_image_folder(photos / "val", per_class=3, seed=2)
    hf_resnet.finetune(
        model_name_or_path=str(base),
        train_dir=str(photos / "train"),
        validation_dir=str(photos / "val"),
        output_dir=str(tmp_path / "alice" / "run"),
        num_train_epochs=2,
        unfreeze_at_epoch=1,
        per_device_train_batch_size=6,
        push_to_hub=True,
        hub_model_id="user/portable",
        hub_strategy="checkpoint",  # whole checkpoints too: trainer_state.json, training_args.bin, ...
        hub_token=TOKEN,
    )
    pushed = hub.files("user/portable")
    assert {"recipe.json", "README.md", "trainer_state.json", "last-checkpoint/trainer_state.json"} <= set(pushed)
    # No folder of the machine in any uploaded byte: the run's, the home folder, the temporary folder (where the
    # tests keep HF_RESNET_CACHE, whose free space recipe.json reports).
    machine = (tmp_path, tmp_path.resolve(), Path.home(), Path(tempfile.gettempdir()).resolve())
    folders = {f"{folder}{os.sep}".encode() for folder in machine} | {b"alice"}
    assert [name for name, content in pushed.items() if any(folder in content for folder in folders)] == []
    recipe = json.loads(pushed["recipe.json"])
    cache = recipe["recipe"]["data_path"]["image_cache"]
    assert cache["mode"] == "disk" and "free in $HF_RESNET_CACHE/images" in cache["why"]
    assert recipe["data"]["train_dir"] == "train" and recipe["data"]["validation_dir"] == "val"
    assert recipe["dataset"] == "photos/train"  # named under the data root's name: "train" alone says nothing
    assert recipe["paths"] == {"relative_to": "data_root", "not_recorded": ["model_name_or_path"]}
    card = pushed["README.md"].decode()
    assert "hf-resnet train --recipe user/portable --data_root YOUR_DATA --model_name_or_path" in card

    # A recipe that left out a local base model asks for one, in one line, before any work.
    from hf_resnet.config.parsing import parse_args

    with pytest.raises(ValueError, match=r"^--recipe .*run: model_name_or_path was a local path .*--model_name_or"):
        parse_args(["--recipe", str(tmp_path / "alice" / "run"), "--output_dir", str(tmp_path / "unused")])

    # Someone else reruns it from the Hub id on their own folders, laid out the same way, as a user would.
    bob = tmp_path / "bob"
    make_image_folder(bob / "data" / "train", per_class=6, seed=3)
    make_image_folder(bob / "data" / "val", per_class=3, seed=4)
    rerun = run_command(
        f"hf-resnet train --recipe user/portable --data_root {bob / 'data'} --model_name_or_path {base} "
        f"--output_dir {bob / 'rerun'} --num_train_epochs 1",  # the command line still wins
        {**subprocess_env(hub, bob / "hf_home", token=TOKEN), "OMP_NUM_THREADS": "1"},
        bob,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = json.loads((bob / "rerun" / "recipe.json").read_text())
    assert again["data"] == recipe["data"] and again["model"] == recipe["model"]
    assert again["training"] == recipe["training"] | {"num_train_epochs": 1.0}
    summary = rerun.stdout + rerun.stderr
    assert f"data: {bob / 'data' / 'train'}: 18 train / 9 validation images" in summary


def test_a_progress_bar_made_in_the_push_thread_waits_while_the_trainer_bar_writes():
    from huggingface_hub.utils import tqdm as hub_bar
    from tqdm.auto import tqdm as trainer_bar  # the class of transformers' ProgressCallback bars

    share_progress_bar_lock()  # what HubCheckpointPusher does before its thread starts
    made = threading.Event()

    def push_thread():
        with hub_bar(total=1, disable=True):  # even a disabled bar joins and leaves tqdm's set of bars
            made.set()

    # tqdm.write (ProgressCallback.on_log) iterates the set of bars inside external_write_mode.
    with trainer_bar.external_write_mode():
        thread = threading.Thread(target=push_thread)
        thread.start()
        blocked = not made.wait(timeout=1)
    thread.join()
    assert blocked and made.is_set()


def test_an_invalid_repo_id_is_refused_with_a_hint_before_any_request(hub, tmp_path, capsys):
    run = make_run_folder(tmp_path / "run", checkpoint=False)
    with pytest.raises(PushError) as failure:
        push(run, "bad id!!")
    message = str(failure.value)
    assert message.startswith("--repo 'bad id!!' is not a Hub repo id (Repo id must use alphanumeric chars")
    assert message.endswith("Use NAMESPACE/NAME or NAME, e.g. me/resnet-beans.") and ".." not in message
    assert hub.requests == []

    capsys.readouterr()
    assert cli(["push", str(run), "--repo", "bad id!!"]) == 2
    assert capsys.readouterr().err.strip() == f"hf-resnet push: {message}"


def test_a_timm_config_with_null_model_args_is_uploaded_without_them_so_timm_can_read_it(tmp_path):
    """Folders saved before hf_resnet recorded model_args hold `"model_args": null`, which timm cannot parse."""
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet10t", "model_args": None}))
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    uploaded = portable_files(files_to_push(tmp_path), tmp_path)
    assert json.loads(uploaded["config.json"]) == {"architecture": "resnet10t"}
    assert json.loads((tmp_path / "config.json").read_text())["model_args"] is None  # the local file is unchanged
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet10t", "model_args": {"drop_rate": 0.1}}))
    assert portable_files(files_to_push(tmp_path), tmp_path)["config.json"] == tmp_path / "config.json"
