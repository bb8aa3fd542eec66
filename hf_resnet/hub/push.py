"""Sharing a run on the Hub: `push` after training, from the CLI, or from Python, and pushes during training.

All pushing goes through `huggingface_hub` (`create_repo`, `create_commit`), so `HF_TOKEN`,
`HF_ENDPOINT` and Xet or LFS storage work as they do everywhere else. A push never changes what
training saved (it only re-renders the card for the repo id and removes a token the Trainer
pickled into `training_args.bin`), so when it fails the output folder is still complete, and
running it again sends only what the Hub does not already hold: unchanged files are left out of
the commit and already stored objects are not uploaded again. What is uploaded names no folder of
this machine: paths the Trainer recorded are made relative to the output folder (`portable_files`).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..config import run_folder
from ..config.checks import hub_repo_id
from . import space
from .card import write_model_card

logger = logging.getLogger(__name__)

#: Never pushed from an output folder: Trainer checkpoints (optimizer state; `--hub_strategy` pushes those),
#: the resume fingerprint run_args.json (this machine's absolute paths, for local resumes only), the Trainer's
#: pickled `training_args.bin` (nothing reads it back, recipe.json holds the recipe, and the Hub's scanner
#: flags pickles), and, as in transformers, names starting with "_" or "." (staging, caches, editor files).
IGNORE_PATTERNS = ("checkpoint-*", "run_args.json", "training_args.bin", "_*", ".*")
#: What a checkpoint contributes to the repo's root while training goes on: enough to load the model.
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
)
TRAINING_ARGS_FILE = "training_args.bin"


class PushError(RuntimeError):
    """A push that did not complete; the message says what failed and the command that resumes it."""

    def __init__(self, message: str, retry_command: str):
        super().__init__(message)
        self.retry_command = retry_command


def retry_command(
    output_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    revision: str | None = None,
    space_id: str | None = None,
    allow_unfinished: bool = False,
) -> str:
    """The shell command that pushes `output_dir` again (never with a token: that comes from HF_TOKEN).

    >>> retry_command("outputs/beans", "me/beans", revision="v2", space_id="me/beans-demo")
    'hf-resnet push outputs/beans --repo me/beans --revision v2 --space me/beans-demo'
    """
    command = ["hf-resnet", "push", shlex.quote(str(output_dir)), "--repo", shlex.quote(repo_id)]
    if private:
        command.append("--private")
    if revision:
        command += ["--revision", shlex.quote(revision)]
    if space_id:
        command += ["--space", shlex.quote(space_id)]
    if allow_unfinished:
        command.append("--allow_unfinished")
    return " ".join(command)


# ----------------------------------------------------------------------------- secrets


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def redact_training_args(path: str | Path) -> bool:
    """Remove tokens (`hub_token`, ...) from a `training_args.bin`; returns whether the file changed.

    The Trainer pickles its whole `TrainingArguments`, token included, into every checkpoint.
    Loading that pickle runs code from the file, which is acceptable only because it is one the
    Trainer wrote into the folder being pushed.
    """
    import torch

    path = Path(path)
    args = torch.load(path, weights_only=False)
    secrets = [name for name in vars(args) if name.endswith("_token") and isinstance(getattr(args, name), str)]
    if not secrets:
        return False
    for name in secrets:
        setattr(args, name, None)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(args, partial)
    os.replace(partial, path)  # atomic: a crash here leaves the old file or the new one, never half of one
    return True


def find_token(files: dict[str, Path | bytes], token: str | None) -> str | None:
    """The first of `files` (by path in repo) whose bytes contain `token`, or None."""
    if not token:
        return None
    needle = token.encode()
    return next((name for name, data in files.items() if needle in _bytes(data)), None)


def _bytes(data: Path | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.read_bytes()


# ----------------------------------------------------------------------------- machine-local paths

#: Text files whose content may hold the run folder's absolute path (trainer_state.json's best checkpoint, ...).
TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".yml", ".csv")


def _portable_path(value: str, run_dir: Path) -> str:
    """An absolute path as the run folder's relative one ("." for the folder), or its last name if outside it."""
    path = Path(value)
    for root in dict.fromkeys((run_dir, run_dir.resolve())):
        if path == root or root in path.parents:
            return path.relative_to(root).as_posix() or "."
    return path.name


def _portable_text(text: str, run_dir: Path) -> str:
    for root in sorted({str(run_dir), str(run_dir.resolve())}, key=len, reverse=True):
        # The folder itself becomes ".", a path inside it loses the prefix; "/runs/a" in "/runs/ab" is left alone.
        pattern = re.compile(re.escape(root) + r"(?:" + re.escape(os.sep) + r"|(?![\w.-]))")
        text = pattern.sub(lambda match: "" if match.group().endswith(os.sep) else ".", text)
    return text


def _loadable_config(content: bytes) -> bytes:
    """config.json without `"model_args": null`, which transformers wrote for timm models before hf_resnet set it.

    `timm.create_model("hf-hub:...")` cannot read a null there; without the key it loads as timm's own uploads do.
    """
    try:
        config = json.loads(content)
    except ValueError:
        return content
    if not isinstance(config, dict) or "model_args" not in config or config["model_args"] is not None:
        return content
    del config["model_args"]
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


def portable_files(files: dict[str, Path], run_dir: str | Path) -> dict[str, Path | bytes]:
    """What to upload for each file: the file itself, or a copy whose paths no longer name this machine's folders.

    The Trainer records absolute paths (`best_model_checkpoint` in trainer_state.json); on the Hub
    they would show the user's directory layout and point nowhere. Paths inside `run_dir` (the run's
    output folder) become relative to it, and a checkpoint path in trainer_state.json relative to its
    run folder wherever that was when it was recorded (a folder moved or copied since). A config.json
    that timm could not read (see `_loadable_config`) is uploaded without the offending key. The local
    files are not changed.
    """
    run_dir = Path(run_dir).absolute()
    needles = {str(run_dir).encode(), str(run_dir.resolve()).encode()}
    portable: dict[str, Path | bytes] = {}
    for name, path in files.items():
        content = original = path.read_bytes()
        if Path(name).name == "config.json":
            content = _loadable_config(content)
        if Path(name).name == run_folder.STATE_FILE:  # recorded where the folder was then, which may not be here
            state = run_folder.portable_state(json.loads(content))
            content = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8")
        if path.suffix in TEXT_SUFFIXES and any(needle in content for needle in needles):
            content = _portable_text(content.decode("utf-8"), run_dir).encode("utf-8")
        portable[name] = path if content == original else content
    return portable


def _redact_folder(folder: Path) -> None:
    for path in sorted(folder.rglob(TRAINING_ARGS_FILE)):
        try:
            if redact_training_args(path):
                logger.warning("Removed the Hub token saved in %s.", path)
        except Exception as error:  # unreadable pickle (other versions): the byte scan for the token still runs
            logger.warning("Could not check %s for a saved token: %s", path, error)


# ----------------------------------------------------------------------------- what to push


def _ignored(path_in_repo: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in path_in_repo.split("/") for pattern in patterns)


def files_to_push(folder: str | Path, patterns: Iterable[str] | None = None) -> dict[str, Path]:
    """`{path in repo: local file}` for a folder; `patterns` keeps only matching top-level names."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not _ignored(name, IGNORE_PATTERNS):
            if patterns is None or any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                files[name] = path
    return files


def unfinished_problem(output_dir: str | Path) -> str | None:
    """One line saying that `output_dir` holds a run that did not finish and what to do, or None.

    >>> unfinished_problem("no/such/folder") is None
    True
    """
    status = run_folder.unfinished(Path(output_dir))
    if status is None:
        return None
    return (
        f"{output_dir} holds an unfinished run ({status}): resume it to its end with the same command plus "
        "--resume_from_checkpoint last, or pass --allow_unfinished to push these weights as they are"
    )


def _check_output(output_dir: Path, command: str) -> None:
    weights = list(output_dir.glob("model*.safetensors")) + list(output_dir.glob("pytorch_model*.bin"))
    if not (output_dir / "config.json").is_file() or not weights:
        raise PushError(
            f"{output_dir} is not a finished run: it needs config.json and model weights "
            "(model.safetensors). Finish (or resume) training first, then push again: " + command,
            command,
        )


# ----------------------------------------------------------------------------- errors


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub's HTTP client library changed across versions; catch whichever is installed.
    found = []
    for module_name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module_name).TransportError)
        except (ImportError, AttributeError):
            continue
    return (*found, ConnectionError, TimeoutError)


def _chain(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def repo_id_problem(repo_id: str) -> str | None:
    """One line saying why `repo_id` is not a Hub repo id and what to pass instead; None when it is one.

    >>> repo_id_problem("me/resnet-beans") is None
    True
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        reason = str(error).strip().rstrip(".")
        return f"--repo {repo_id!r} is not a Hub repo id ({reason}). Use NAMESPACE/NAME or NAME, e.g. me/resnet-beans."
    return None


def _explain(error: BaseException, stage: str, endpoint: str, repo_id: str, token: str | None) -> tuple[str, str]:
    """(what went wrong, what to do before retrying), for a person reading a log."""
    chain = _chain(error)
    # Messages lose their final full stop: they are quoted inside sentences that end with their own.
    details = "; ".join(dict.fromkeys(str(e).strip().splitlines()[0].rstrip(".") for e in chain if str(e).strip()))
    details = _redact(details, token)
    responses = [getattr(e, "response", None) for e in chain if isinstance(e, HfHubHTTPError)]
    status = next((response.status_code for response in responses if response is not None), None)
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return f"offline mode is on ({details})", "Unset HF_HUB_OFFLINE first."
    if status == 401:
        return (
            f"the Hub refused the credentials (401: {details})",
            "Set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens) "
            "or run `hf auth login` first.",
        )
    if status == 403:
        return (
            f"the token may not write to {repo_id} (403: {details})",
            f"Use a token with write access to the namespace of {repo_id}, or push to your own namespace.",
        )
    if status is not None and status >= 500:
        return (
            f"the Hub had a server error ({status}) while {stage} ({details})",
            "Files uploaded before the error are kept by the Hub; the retry sends only the rest.",
        )
    if any(isinstance(e, _transport_errors()) for e in chain):
        return f"could not reach {endpoint} ({details})", "Check the network connection (and HF_ENDPOINT)."
    return f"{type(error).__name__} while {stage}: {details}", ""


# ----------------------------------------------------------------------------- push


def _commit(
    api: HfApi,
    repo_id: str,
    files: dict[str, Path | bytes],
    message: str,
    revision: str | None,
    repo_type: str | None = None,
) -> str:
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if isinstance(content, bytes) else str(content))
        for name, content in files.items()
    ]
    commit = api.create_commit(repo_id, operations, commit_message=message, revision=revision, repo_type=repo_type)
    return commit.commit_url


def push(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    space_id: str | None = None,
    allow_unfinished: bool = False,
) -> str:
    """Push a finished output folder (weights, configs, card, plots, results) to a Hub model repo.

    The repo is created if needed (`private` only matters then), the model card is (re)written for
    `repo_id`, and `checkpoint-*` folders stay local. `token` defaults to `HF_TOKEN` or the
    `hf auth login` token. Pushing again after a failure uploads only what is missing.

    With `space_id`, a Gradio Space is created or updated too (see `hub/space.py`): its `app.py`
    runs `hf-resnet demo` on the model repo, and the model card links to it. A private Space
    needs the token as its `HF_TOKEN` secret to read a private model.

    A run that did not finish (stopped by Ctrl-C/SIGTERM, or killed) is refused unless
    `allow_unfinished`; its card then says it is unfinished.

    Returns:
        The URL of the commit on the Hub.

    Raises:
        PushError: what failed, and the `hf-resnet push ...` command that retries it.
    """
    output_dir = Path(output_dir)
    command = retry_command(output_dir, repo_id, private, revision, space_id, allow_unfinished)
    problem = repo_id_problem(repo_id)
    if problem:
        raise PushError(problem, command)
    _check_output(output_dir, command)
    problem = None if allow_unfinished else unfinished_problem(output_dir)
    if problem:
        raise PushError(problem, command)
    secret = token or get_token()
    _redact_folder(output_dir)  # checkpoints too: the token must not stay on disk either
    leaking = find_token(portable_files(files_to_push(output_dir), output_dir), secret)
    if leaking:
        raise PushError(
            f"{output_dir / leaking} contains your Hub token, so nothing was pushed.\n"
            f"Remove the token from that file, then push again: {command}",
            command,
        )

    api = HfApi(token=token)
    stage = "creating the repository"
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        command = retry_command(output_dir, repo_id, private, revision, space_id, allow_unfinished)
        if space_id:
            stage = f"creating the Space {space_id}"
            space_id = api.create_repo(
                space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True
            ).repo_id
            command = retry_command(output_dir, repo_id, private, revision, space_id, allow_unfinished)
        if revision:
            stage = f"creating branch {revision}"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        stage = "writing the model card"
        write_model_card(output_dir, repo_id=repo_id, space_id=space_id)
        stage = "uploading files"
        files = portable_files(files_to_push(output_dir), output_dir)
        message = commit_message or f"Upload {output_dir.resolve().name} with hf_resnet"
        url = _commit(api, repo_id, files, message, revision)
        if space_id:
            stage = f"uploading the Space {space_id}"
            space_files = space.space_files(repo_id, space_id)
            _commit(api, space_id, space_files, f"Demo of {repo_id} with hf_resnet", None, repo_type="space")
    except Exception as error:
        problem, advice = _explain(error, stage, api.endpoint, repo_id, secret)
        explicit = " (pass the token through HF_TOKEN)" if token else ""
        raise PushError(
            f"Push of {output_dir} to {api.endpoint}/{repo_id} failed: {problem}.\n"
            f"The local output is complete; nothing there was lost.{' ' + advice if advice else ''}\n"
            f"Retry without re-training{explicit}: {command}",
            command,
        ) from error
    logger.info("Pushed %s to %s/%s (%s)", output_dir, api.endpoint, repo_id, url)
    return url


def push_after_training(output_dir: str | Path, training_args: TrainingArguments) -> None:
    """Push the finished run if `--push_to_hub` (main process only).

    Raises `PushError` when the push fails: a run asked to publish that did not must not end as a
    success. Training's results are on disk by now, so the error says the folder is intact and gives
    the `hf-resnet push ...` command that sends it later.
    """
    if not training_args.push_to_hub or training_args.process_index != 0:
        return
    push(
        output_dir,
        hub_repo_id(training_args),
        token=training_args.hub_token,
        private=training_args.hub_private_repo,
        revision=getattr(training_args, "hub_revision", None),
        commit_message="End of training",
    )


# ----------------------------------------------------------------------------- pushes during training


def _stage_copy(files: dict[str, Path | bytes], staging: Path) -> dict[str, Path]:
    # Hard links cost nothing and survive the Trainer deleting an old checkpoint mid-upload.
    staged = {}
    for name, path in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(path, bytes):
            target.write_bytes(path)
            staged[name] = target
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        staged[name] = target
    return staged


def share_progress_bar_lock() -> None:
    """Make every tqdm class guard tqdm's one set of live bars with the same lock.

    All tqdm classes add to and iterate `tqdm._instances`, but `set_lock` gives a class a lock of
    its own, and huggingface_hub does that to its bars at import. A bar made in the push thread
    then changes the set while the Trainer's progress bar iterates it under the other lock
    (`tqdm.write` from `ProgressCallback.on_log`): "Set changed size during iteration".
    """
    import huggingface_hub.utils.tqdm  # noqa: F401  (the push thread's bars; their class takes its lock on import)
    from tqdm import std

    lock, classes = std.tqdm.get_lock(), list(std.tqdm.__subclasses__())
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if vars(cls).get("_lock", lock) is not lock:
            cls.set_lock(lock)


class HubCheckpointPusher(TrainerCallback):
    """Push each saved checkpoint in the background, with transformers' `hub_strategy` semantics.

    - `every_save`: the model files of each checkpoint go to the repo's root;
    - `checkpoint`: the same, plus the whole checkpoint in `last-checkpoint/` (resume from it);
    - `all_checkpoints`: the same, plus each checkpoint in its own `checkpoint-N/` folder.

    One push runs at a time; a save during a push is skipped unless `hub_always_push`. A failed
    push is logged as a warning: training goes on, and the final push sends everything.
    """

    def __init__(self, training_args: TrainingArguments):
        self.repo_id = hub_repo_id(training_args)
        self.strategy = str(getattr(training_args.hub_strategy, "value", training_args.hub_strategy))
        self.token = training_args.hub_token
        self.private = training_args.hub_private_repo
        self.revision = getattr(training_args, "hub_revision", None)
        self.always_push = training_args.hub_always_push
        share_progress_bar_lock()  # before the push thread makes its first bar
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_resnet-push")
        self._pending: list[Future] = []
        self._repo_ready = False

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not checkpoint.is_dir():
            return
        if not self.always_push and any(not job.done() for job in self._pending):
            logger.info("Not pushing %s: the previous push is still running.", checkpoint.name)
            return
        _redact_folder(checkpoint)
        files = files_to_push(checkpoint, MODEL_FILES)
        if self.strategy in ("checkpoint", "all_checkpoints"):
            folder = "last-checkpoint" if self.strategy == "checkpoint" else checkpoint.name
            files.update({f"{folder}/{name}": path for name, path in files_to_push(checkpoint).items()})
        staging = Path(tempfile.mkdtemp(prefix="_hub-push-", dir=args.output_dir))
        staged = _stage_copy(portable_files(files, args.output_dir), staging)
        message = f"Training in progress, step {state.global_step}"
        self._pending.append(self._executor.submit(self._push, staged, staging, message, checkpoint.name))

    def _push(self, files: dict[str, Path], staging: Path, message: str, name: str) -> None:
        secret = self.token or get_token()
        try:
            leaking = find_token(files, secret)
            if leaking:
                raise ValueError(f"{leaking} contains the Hub token; not pushing it")
            api = HfApi(token=self.token)
            if not self._repo_ready:
                self.repo_id = api.create_repo(self.repo_id, private=self.private, exist_ok=True).repo_id
                if self.revision:
                    api.create_branch(self.repo_id, branch=self.revision, exist_ok=True)
                self._repo_ready = True
            _commit(api, self.repo_id, files, message, self.revision)
            logger.info("Pushed %s to %s", name, self.repo_id)
        except Exception as error:  # a push must never stop training
            problem, _ = _explain(error, "uploading files", constants.ENDPOINT, self.repo_id, secret)
            logger.warning(
                "Push of %s to %s failed: %s. Training goes on; the final push retries.", name, self.repo_id, problem
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def wait(self) -> None:
        """Block until every queued push has finished (successfully or not)."""
        for job in self._pending:
            job.result()
        self._pending.clear()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if any(not job.done() for job in self._pending):
            logger.info("Waiting for the last checkpoint push to finish.")
        self.wait()


def trainer_callbacks(training_args: TrainingArguments) -> list[TrainerCallback]:
    """Callbacks that push checkpoints during training, per `--hub_strategy` (none for `end`)."""
    if not training_args.push_to_hub:
        return []
    strategy = str(getattr(training_args.hub_strategy, "value", training_args.hub_strategy))
    return [] if strategy == "end" else [HubCheckpointPusher(training_args)]
