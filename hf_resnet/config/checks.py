"""Every argument of a run checked in one place, before any image is read, model loaded or folder created.

A wrong value found after the data scan costs the user minutes and leaves an empty output
folder; found by torch mid-run, it is a traceback that does not name the flag. So a run calls
`validate` once, first (the command line before it even imports the training stack), and each check
raises an `ArgumentError` whose one line names the argument, the value and what is allowed. Ranges
and choices are not written here: they are declared in the argument dataclasses' fields
(hf_resnet/flags.py) and read from there. The functions that do the work keep only the preconditions a
direct caller needs.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ..data.arguments import DataArguments
from ..families import BACKBONE_PARTS, Family, checkpoint_family, family_of
from ..families.loading import source_problem
from ..families.resnet import ARCHITECTURES
from ..flags import Bounds, problems
from ..model.arguments import ModelArguments, arch_problem
from ..model.parts import MIN_CACHED_PARTS, cached_parts
from ..scoring.metrics import METRICS, MULTI_LABEL_METRICS, OTHER_RESULTS, parse_metric_names
from . import run_folder
from .arguments import ResNetTrainingArguments
from .example_flags import REFUSED, flag_aliases
from .plan import Distillation, Plan, Rates
from .recipe_file import model_reference

logger = logging.getLogger(__name__)

#: Values of `--resume_from_checkpoint` that mean "the newest checkpoint in --output_dir".
RESUME_LAST = ("last", "latest", "true", "True")


class ArgumentError(ValueError):
    """A run argument that cannot work; the message is one line: `--flag value: what is allowed`."""

    def __init__(self, flag: str, value, allowed: str):
        self.flag, self.value, self.allowed = flag, value, allowed
        shown = "not given" if value is None else value if isinstance(value, str) else repr(value)
        super().__init__(f"--{flag} {shown}: {allowed}")


def named_as_given(error: BaseException, argv: list[str], classes) -> BaseException:
    """`error` naming its flag as the command line gave it: a refusal of `--validation_split` reads
    `--train_val_split` to someone who typed the transformers example's alias (the fields know only one name)."""
    if not isinstance(error, ArgumentError):
        return error
    given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}
    for alias, field in flag_aliases(classes).items():
        if field == error.flag and alias in given and field not in given:
            return ArgumentError(alias, error.value, error.allowed)
    return error


def validate(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ResNetTrainingArguments,
    dataset=None,
    config=None,
) -> Plan:
    """Raise `ArgumentError` for the first argument that cannot work, else resolve the run's plan (config/plan.py).

    Run once per run, before any work. Reads nothing but flags, folder listings and file headers, so it
    answers in well under a second; with --push_to_hub it also asks the Hub once whose the token is.
    """
    _check_example_flags(model_args, training_args)
    frozen = _check_declared(model_args, data_args, training_args)
    _check_combinations(model_args, data_args, training_args, dataset, config, frozen)
    family = _check_paths(model_args, data_args, dataset, config, training_args.hub_token)
    distillation = _check_teacher(model_args, training_args)
    _check_devices(training_args)
    _check_loggers(training_args)
    _check_output_dir(training_args, data_args if dataset is None else None)
    _check_not_locked(training_args)
    _check_hub(training_args)
    resume = resume_checkpoint(training_args)
    if family is None:  # from scratch: no checkpoint's config.json was read
        family = _layout_family(model_args, config)
    values = run_folder.fingerprint(model_args, data_args, training_args, dataset, config, family)
    if resume is not None:
        _check_same_recipe(Path(resume), values, training_args)
    plan = _plan(model_args, data_args, training_args, dataset, family, frozen, resume, values)
    return plan.with_distillation(distillation) if distillation else plan


def _layout_family(model_args, config) -> Family:
    """From scratch: the family of the layout (`finetune(config=...)`, else `--arch`)."""
    from ..model.build import arch_config

    return family_of(config if config is not None else arch_config(model_args.arch, model_args.variant))


def _plan(model_args, data_args, args, dataset, family: Family, frozen: list[str], resume, values) -> Plan:
    """What the flags and the machine decide, resolved once; the run adds what the data says (`Plan.with_data`)."""
    from ..runtime.launcher import cpu_threads

    pretrained = bool(model_args.model_name_or_path)
    return Plan(
        source=model_args.model_name_or_path or f"{model_args.arch or 'custom layout'} (from scratch)",
        family=family,
        pretrained=pretrained,
        frozen=tuple(frozen),
        rates=Rates.of(args, pretrained),
        per_device_batch=args.per_device_train_batch_size,
        accumulation=args.gradient_accumulation_steps,
        processes=args.world_size,
        precision=training_precision(args),
        threads=cpu_threads() if args.device.type == "cpu" else None,
        data_overlap={"mode": args.data_overlap, "why": args.data_overlap_reason},
        streaming=data_args.streaming or _is_stream(dataset),
        output_dir=str(args.output_dir),
        output_state=_output_state(args, resume),
        resume_from=resume,
        push_to=hub_repo_id(args) if args.push_to_hub else None,
        fingerprint=values,
    )


def training_precision(args) -> str:
    """The precision the run trains in, and why: what the summary and recipe.json say."""
    name = "bf16 autocast" if args.bf16 else "fp16 autocast with loss scaling" if args.fp16 else "fp32"
    return f"{name} ({getattr(args, 'precision_reason', 'as given')})"


def _output_state(args, resume: str | None) -> str:
    if resume is not None:
        return f"resumes from {Path(resume).name}"
    if run_folder.previous_run(Path(args.output_dir).expanduser()):
        return "replaces the previous run there (--overwrite_output_dir)"
    return "new run"


# ----------------------------------------------------------------------------- values


# ----------------------------------------------------------------------------- the transformers example's flags


def _check_example_flags(model_args, args) -> None:
    """The example's flags that cannot apply here (config/example_flags.py), each refused with the reason."""
    for arguments in (model_args, args):
        for name, why in REFUSED.items():
            if getattr(arguments, name, None) is not None:
                raise ArgumentError(name, getattr(arguments, name), why)
    if model_args.model_type not in (None, "resnet"):
        raise ArgumentError(
            "model_type",
            model_args.model_type,
            "hf_resnet fine-tunes ResNets only (give resnet or leave it out; from scratch, name a layout with --arch)",
        )


def _check_declared(model_args, data_args, args) -> list[str]:
    """Every range and choice declared in the argument dataclasses' fields (hf_resnet/flags.py); the frozen parts."""
    for arguments in (model_args, data_args, args):
        for name, value, allowed in problems(arguments):
            raise ArgumentError(name, value, allowed)
    if args.max_steps <= 0 and args.num_train_epochs not in Bounds.parse("(0, inf)"):
        raise ArgumentError("num_train_epochs", args.num_train_epochs, "must be > 0 (or give --max_steps > 0)")
    try:
        frozen = model_args.frozen_parts()
    except ValueError:
        raise ArgumentError(
            "freeze", model_args.freeze, f"a comma list of {', '.join(BACKBONE_PARTS)}, or none"
        ) from None
    _check_metrics(args)
    return frozen


def _check_metrics(args) -> None:
    try:
        names = parse_metric_names(args.metrics)
    except ValueError as error:
        raise ArgumentError("metrics", args.metrics, str(error).split(": ", 1)[-1]) from None
    best = (args.metric_for_best_model or "").removeprefix("eval_")
    # Multi-label names are known once the data is read; a multi-label run checks them itself (training/run.py).
    only_multi_label = [name for name in MULTI_LABEL_METRICS if name not in METRICS]
    if best and best not in (*names, *OTHER_RESULTS, *only_multi_label):
        raise ArgumentError(
            "metric_for_best_model",
            args.metric_for_best_model,
            f"is not computed; name loss or one of --metrics ({','.join(names)})",
        )


# ----------------------------------------------------------------------------- combinations


def _check_combinations(model_args, data_args, args, dataset, config, frozen: list[str]) -> None:
    if model_args.model_name_or_path and model_args.arch:
        raise ArgumentError(
            "arch",
            model_args.arch,
            f"pass either --model_name_or_path ({model_args.model_name_or_path}, fine-tune a checkpoint) "
            "or --arch (from scratch), not both",
        )
    if config is None and not model_args.model_name_or_path and not model_args.arch:
        raise ArgumentError(
            "model_name_or_path", None, "no model: pass --model_name_or_path (e.g. microsoft/resnet-50) or --arch"
        )
    if model_args.arch and (allowed := arch_problem(model_args.arch)):
        raise ArgumentError("arch", model_args.arch, allowed)
    # v1.5, the default, is how timm's ResNets stride already; v1 asks what a timm name does not say.
    if model_args.arch and model_args.arch not in ARCHITECTURES and model_args.variant == "v1":
        raise ArgumentError(
            "variant",
            model_args.variant,
            f"applies to the transformers layouts; timm names its variants ({model_args.arch} is one as it is: "
            "resnet50 strides in the 3x3, resnet50d adds an average-pool shortcut)",
        )
    if dataset is None:
        if data_args.dataset_name and data_args.train_dir:
            raise ArgumentError(
                "dataset_name", data_args.dataset_name, f"pass it or --train_dir ({data_args.train_dir}), not both"
            )
        if not data_args.dataset_name and not data_args.train_dir:
            raise ArgumentError("train_dir", None, "no data: pass --dataset_name or --train_dir")
        if data_args.validation_dir and not data_args.train_dir:
            raise ArgumentError("validation_dir", data_args.validation_dir, "needs --train_dir beside it")
    streaming = data_args.streaming or _is_stream(dataset)
    if streaming and args.max_steps <= 0:
        raise ArgumentError(
            "max_steps", args.max_steps, "--streaming needs --max_steps > 0: a stream has no length to count epochs by"
        )
    if data_args.streaming and dataset is None and not data_args.dataset_name:
        raise ArgumentError(
            "streaming", True, "reads a Hub dataset: pass --dataset_name (local folders are indexed instead)"
        )
    if args.cache_frozen_features:
        if streaming:
            raise ArgumentError("cache_frozen_features", True, "needs a dataset of known length, not a stream")
        if cached_parts(frozen) < MIN_CACHED_PARTS:
            raise ArgumentError(
                "cache_frozen_features",
                True,
                f"needs the backbone frozen through stage3 at least (--freeze "
                f"{','.join(BACKBONE_PARTS[:MIN_CACHED_PARTS])} or {','.join(BACKBONE_PARTS)}); frozen here: "
                f"{', '.join(frozen) or 'nothing'}",
            )
        if args.unfreeze_at_epoch is not None:
            raise ArgumentError(
                "cache_frozen_features", True, "and --unfreeze_at_epoch: unfreezing changes what could be cached"
            )
    if args.overwrite_output_dir and args.resume_from_checkpoint:
        raise ArgumentError(
            "overwrite_output_dir", True, "and --resume_from_checkpoint: replace the run or continue it, not both"
        )


def _is_stream(dataset) -> bool:
    if dataset is None:
        return False
    import datasets

    return isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict))


# ----------------------------------------------------------------------------- paths and devices


def _check_paths(model_args, data_args, dataset, config, token) -> Family | None:
    """Data and model sources that can be had; returns a checkpoint's family, read from its config.json."""
    if dataset is None:
        for flag in ("train_dir", "validation_dir"):
            folder = getattr(data_args, flag)
            if folder and not Path(folder).expanduser().is_dir():
                raise ArgumentError(flag, folder, "no such directory")
        name = data_args.dataset_name
        if name and not data_args.train_dir and not Path(name).expanduser().exists():
            from ..runtime.availability import hub_dataset_problem

            if problem := hub_dataset_problem(name, data_args.dataset_config, token=token):
                raise ArgumentError("dataset_name", name, problem)
    if model_args.model_name_or_path:
        if problem := source_problem(  # the processor has a default
            model_args.model_name_or_path, False, model_args.revision, model_args.cache_dir
        ):
            raise ArgumentError("model_name_or_path", model_args.model_name_or_path, problem)
        # From config.json alone: a network of no supported family (or no config to be had) is one line, now.
        return checkpoint_family(model_args.model_name_or_path, model_args.revision, model_args.cache_dir)
    return None


#: The teacher's weight in a distilled run's loss and its temperature, where not given (see their flags).
DISTILL_ALPHA = 0.5
DISTILL_TEMPERATURE = 4.0


def _check_teacher(model_args, args) -> Distillation | None:
    """`--teacher` that can be loaded, as a supported family; the distillation flags only beside it."""
    teacher = model_args.teacher
    if not teacher:
        for name in ("distill_alpha", "distill_temperature"):
            if getattr(args, name) is not None:
                raise ArgumentError(
                    name, getattr(args, name), "sets how a teacher is learnt from: pass --teacher too (or drop it)"
                )
        return None
    if args.cache_frozen_features:
        raise ArgumentError(
            "cache_frozen_features", True, "and --teacher: the teacher needs the images, not the cached features"
        )
    if problem := source_problem(teacher, True, None, model_args.cache_dir):
        raise ArgumentError(
            "teacher", teacher, f"{problem}; pass an hf_resnet run folder or the Hub id of a trained classifier"
        )
    family = checkpoint_family(teacher, None, model_args.cache_dir, flag="--teacher")
    alpha = DISTILL_ALPHA if args.distill_alpha is None else args.distill_alpha
    temperature = DISTILL_TEMPERATURE if args.distill_temperature is None else args.distill_temperature
    return Distillation(teacher, model_reference(teacher), family.name, alpha, temperature)


def _check_devices(args) -> None:
    device = args.device.type
    if args.gpu_decode and device != "cuda":
        raise ArgumentError("gpu_decode", True, f"needs a CUDA device; training runs on {device}")
    if args.sync_bn and args.world_size == 1:
        raise ArgumentError(
            "sync_bn",
            True,
            "synchronises BatchNorm across processes, and this run has one; drop it, or start several "
            "(accelerate launch --multi_gpu --num_processes N ...)",
        )
    # DistributedDataParallel refuses SyncBatchNorm on CPU processes (gloo); CUDA, XPU and HPU run it.
    if args.sync_bn and args.world_size > 1 and device == "cpu":
        raise ArgumentError(
            "sync_bn",
            True,
            f"torch's SyncBatchNorm cannot run on CPU processes ({args.world_size} here); drop --sync_bn (each "
            "process then keeps its own BatchNorm statistics) or train on GPUs",
        )


#: The pip package of each logger `--report_to` names, where it differs from the name.
LOGGER_PACKAGES = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "neptune": "neptune"}


def _check_loggers(args) -> None:
    """Each `--report_to` logger installed, so a missing one is said now, not by the Trainer after the data scan."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    wanted = args.report_to or []
    unknown = [name for name in wanted if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        known = ", ".join(INTEGRATION_TO_CALLBACK)
        raise ArgumentError("report_to", unknown[0], f"choose none, all or any of {known}")
    available = get_available_reporting_integrations()
    if missing := [name for name in wanted if name not in available]:
        packages = " ".join(LOGGER_PACKAGES.get(name, name) for name in missing)
        raise ArgumentError(
            "report_to",
            ",".join(missing),
            f"not installed: pip install {packages}, or drop it from --report_to (none logs to the console only)",
        )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_write_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into `folder` (created if missing), or None; every command's output check."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        return "is a file; pass a folder"
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder.absolute() else f" (its nearest existing parent {existing} is not)"
        return f"not writable{where}; pass a folder you can write to"
    return None


def image_write_problem(path: str | os.PathLike) -> str | None:
    """Why an image cannot be written at `path` (a folder there, an extension no image format has), or None."""
    from PIL import Image

    path = Path(path).expanduser()
    if path.is_dir():
        return "is a folder; pass the image's file name, e.g. cam.png"
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        return f"{path.suffix or 'no'} extension: end the name with .png or .jpg"
    return folder_write_problem(path.parent)


def _check_output_dir(args, data_args=None) -> None:
    if not args.output_dir:
        raise ArgumentError("output_dir", None, "pass the folder the model and results are written to")
    output_dir = Path(args.output_dir).expanduser()
    if problem := folder_write_problem(output_dir):
        raise ArgumentError("output_dir", args.output_dir, problem)
    for flag in ("train_dir", "validation_dir"):
        data = getattr(data_args, flag, None)
        if data and output_dir.resolve().is_relative_to(Path(data).expanduser().resolve()):
            where = "is" if output_dir.resolve() == Path(data).expanduser().resolve() else "lies inside"
            raise ArgumentError(
                "output_dir",
                args.output_dir,
                f"{where} --{flag} {data}: the run's files would be read as images (and replaced images lost); "
                "pass a folder outside the data",
            )
    if foreign := run_folder.foreign_files(output_dir):
        raise ArgumentError(
            "output_dir",
            args.output_dir,
            f"holds {', '.join(foreign)} that hf_resnet did not write, and the run would replace "
            f"{'it' if len(foreign) == 1 else 'them'}; move {'it' if len(foreign) == 1 else 'them'} elsewhere or "
            "pass another --output_dir",
        )
    found = run_folder.previous_run(output_dir)
    if found and not args.resume_from_checkpoint and not args.overwrite_output_dir:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise ArgumentError(
            "output_dir",
            args.output_dir,
            f"holds a previous run ({shown}); pass a new --output_dir, or --resume_from_checkpoint last to continue "
            "it, or --overwrite_output_dir to replace it",
        )


def _check_not_locked(args) -> None:
    """Another run writing the folder now (its main process holds the folder's lock) is refused, not joined."""
    if args.should_save and (holder := run_folder.lock_holder(Path(args.output_dir).expanduser())):
        raise ArgumentError("output_dir", args.output_dir, _busy(holder))


def _busy(holder: str) -> str:
    return f"another run is writing it ({holder}); wait for it to end, or pass another --output_dir"


def lock_output_dir(args) -> run_folder.FolderLock:
    """Take the output folder for this run (its main process), before the run writes anything there.

    Two runs started at once both pass `validate`; the one that takes the lock second is refused here,
    and the folder is checked again, because a run that finished since `validate` looked left its files.
    """
    try:
        lock = run_folder.FolderLock(Path(args.output_dir).expanduser())
    except run_folder.FolderBusy as busy:
        raise ArgumentError("output_dir", args.output_dir, _busy(busy.holder)) from None
    try:
        _check_output_dir(args)
    except ArgumentError:
        lock.release()
        raise
    return lock


# ----------------------------------------------------------------------------- the Hub

#: Seconds to wait for the Hub to confirm the token before refusing to start (huggingface_hub sets no timeout).
WHOAMI_TIMEOUT_S = 20


def hub_repo_id(args) -> str:
    """The repo `--push_to_hub` pushes to: `--hub_model_id`, else the output folder's name (as transformers does)."""
    return args.hub_model_id or Path(args.output_dir).expanduser().resolve().name


def _check_hub(args) -> None:
    """With --push_to_hub, the repo id and the token are checked now, not after hours of training.

    Only what the push needs to start: a valid repo id, a token, and the Hub at HF_ENDPOINT accepting it
    (`whoami`). Write access to one repo cannot be asked without writing; a refusal then comes after
    training, with the command that pushes the kept folder.
    """
    if not args.push_to_hub or not args.should_save:
        return
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = hub_repo_id(args)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        reason = str(error).strip().splitlines()[0].rstrip(".")
        allowed = f"not a Hub repo id ({reason}); pass NAMESPACE/NAME or NAME, e.g. me/resnet-beans"
        if args.hub_model_id:
            raise ArgumentError("hub_model_id", repo_id, allowed) from None
        raise ArgumentError(
            "hub_model_id", None, f"the repo would be named after --output_dir, {repo_id!r}: {allowed}"
        ) from None
    if constants.HF_HUB_OFFLINE:
        raise ArgumentError(
            "push_to_hub", True, "offline mode is on (HF_HUB_OFFLINE=1): unset it, or drop --push_to_hub"
        )
    token = args.hub_token or get_token()
    if not token:
        raise ArgumentError(
            "push_to_hub", True, "no Hub token: set HF_TOKEN (or run `hf auth login`, or pass --hub_token) first"
        )
    api, answer = HfApi(), {}

    def whoami():
        try:
            answer["user"] = api.whoami(token=token)
        except Exception as error:  # reported below, in the training process's own words
            answer["error"] = error

    asking = threading.Thread(target=whoami, daemon=True)  # daemon: a Hub that never answers cannot hold the exit
    asking.start()
    asking.join(WHOAMI_TIMEOUT_S)
    if "user" in answer:
        return
    error = answer.get("error")
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        problem = f"the Hub at {api.endpoint} refused the token (401); set HF_TOKEN to a token with write access"
    elif error is None:
        problem = (
            f"the Hub at {api.endpoint} did not answer in {WHOAMI_TIMEOUT_S} s; check HF_ENDPOINT and the network"
        )
    else:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        problem = f"cannot check the token at {api.endpoint} ({detail}); check HF_ENDPOINT and the network"
    raise ArgumentError("push_to_hub", True, f"{problem}, or drop --push_to_hub (hf-resnet push sends the run later)")


# ----------------------------------------------------------------------------- resuming


def resume_checkpoint(args) -> str | None:
    """The checkpoint `--resume_from_checkpoint` names; `last` is the newest one that can be loaded.

    A newer checkpoint that cannot be loaded (a truncated file, missing state) is skipped with a
    warning naming it, so a copy cut off by a full disk does not block resuming from the one before.
    """
    resume = args.resume_from_checkpoint
    if resume in (None, False, ""):
        return None
    if resume is True or resume in RESUME_LAST:
        output_dir = Path(args.output_dir)
        checkpoint, skipped = run_folder.last_intact_checkpoint(output_dir)
        for path, problem in skipped:
            logger.warning("Not resuming from %s: %s; trying the checkpoint before it", path, problem)
        if checkpoint is None:
            found = (
                f" that loads ({'; '.join(f'{path.name}: {problem}' for path, problem in skipped)})" if skipped else ""
            )
            raise ArgumentError("resume_from_checkpoint", resume, f"no checkpoint-* folder{found} in {output_dir}")
        return str(checkpoint)
    checkpoint = Path(resume).expanduser()
    if not checkpoint.is_dir():
        raise ArgumentError("resume_from_checkpoint", resume, "no such folder; pass a checkpoint-N folder or 'last'")
    if problem := run_folder.checkpoint_problem(checkpoint):
        raise ArgumentError("resume_from_checkpoint", resume, f"cannot resume from it: {problem}")
    return str(checkpoint)


def _check_same_recipe(checkpoint: Path, values: dict, args) -> None:
    recorded = run_folder.read_fingerprint(checkpoint.parent)
    if recorded is None:
        logger.warning(
            "%s has no %s: cannot check that %s belongs to this run's recipe",
            checkpoint.parent,
            run_folder.RUN_ARGS_FILE,
            checkpoint.name,
        )
    defaults = run_folder.field_defaults(ModelArguments, DataArguments, ResNetTrainingArguments)
    if recorded is not None and (differing := run_folder.differences(recorded, values, defaults)):
        raise ArgumentError(
            "resume_from_checkpoint",
            args.resume_from_checkpoint,
            f"{checkpoint} belongs to another recipe ({'; '.join(differing)}); resume with that run's arguments, "
            "or start a new --output_dir",
        )
    state = run_folder.read_state(checkpoint)
    if args.max_steps > 0 and state.get("global_step", 0) >= args.max_steps:
        raise ArgumentError(
            "max_steps",
            args.max_steps,
            f"{checkpoint.name} is already at step {state['global_step']}: nothing left to train; raise --max_steps",
        )
    if args.max_steps <= 0 and state.get("epoch", 0) >= args.num_train_epochs:
        raise ArgumentError(
            "num_train_epochs",
            args.num_train_epochs,
            f"{checkpoint.name} is already at epoch {state['epoch']:g}: nothing left to train; "
            "raise --num_train_epochs",
        )


def check_labels(checkpoint: str | None, labels: list[str]) -> None:
    """After the data is listed: the resumed checkpoint must have been trained on the same classes."""
    if checkpoint is None:
        return
    trained = run_folder.checkpoint_labels(Path(checkpoint))
    if trained is not None and trained != list(labels):
        raise ArgumentError(
            "resume_from_checkpoint",
            checkpoint,
            f"trained on the classes {trained}, but this run's data has {list(labels)}; resume with that run's data, "
            "or start a new --output_dir",
        )
