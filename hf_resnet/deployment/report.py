"""`hf-resnet deploy-report` and `hf_resnet.deploy_report`: every deployable form of some runs, side by side.

Each form (`forms.FORM_NAMES`) of each run is scored on the same held-out images, loaded and preprocessed
as `hf-resnet evaluate` loads them, so an fp32 form's accuracy is evaluate's figure. Beside accuracy:
agreement with the run's PyTorch fp32 answers, size on disk, latency at batch 1 (p50 and p95, the model
alone and with preprocessing), images/s at a batch, and from a fresh process the time to the first answer
and the peak resident memory. A budget (latency, size, accuracy) picks the most accurate form that fits.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config.checks import folder_write_problem
from ..scoring.deployment_table import markdown_table
from .forms import REFERENCE, available_forms, calibration_images, load_forward

#: Files written into --output_dir, and the copy of the report each run folder keeps for its model card.
REPORT_MD, REPORT_JSON, PLOT_PNG, RUN_COPY = "report.md", "report.json", "accuracy_latency.png", "deployment.json"
#: Untimed calls before each timing.
WARMUP_CALLS = 3


class DeploymentError(ValueError):
    """A problem with deploy-report's arguments, phrased so the user knows which one to fix."""


@dataclass
class FormResult:
    """What one form of one run measured. Latencies in milliseconds at batch 1; `latency_ms` is the one budgets
    and the plot use: the median with preprocessing included, what a caller waits for one image."""

    run: str
    form: str
    path: str
    accuracy: float
    agreement: float
    size_mb: float
    latency_ms: float
    latency_ms_p95: float
    model_latency_ms: float
    model_latency_ms_p95: float
    preprocess_ms: float
    images_per_second: float
    model_images_per_second: float
    first_answer_s: float | None = None
    peak_rss_mb: float | None = None
    #: The form's own share of those two: loading and the first answer after the imports every form shares, and
    #: the peak memory above the process's once those imports are done.
    form_first_answer_s: float | None = None
    form_rss_mb: float | None = None
    pareto: bool = False


@dataclass
class Budget:
    """Limits a deployment must meet; None is no limit."""

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    min_accuracy: float | None = None

    def misses(self, result: FormResult) -> list[str]:
        """What `result` misses, one phrase per limit (empty when it fits)."""
        missed = []
        if self.max_latency_ms is not None and result.latency_ms > self.max_latency_ms:
            missed.append(f"latency {result.latency_ms:.3g} ms > --max_latency_ms {self.max_latency_ms:g}")
        if self.max_size_mb is not None and result.size_mb > self.max_size_mb:
            missed.append(f"size {result.size_mb:.3g} MB > --max_size_mb {self.max_size_mb:g}")
        if self.min_accuracy is not None and result.accuracy < self.min_accuracy:
            missed.append(f"accuracy {result.accuracy:.4g} < --min_accuracy {self.min_accuracy:g}")
        return missed

    def shortfall(self, result: FormResult) -> float:
        """How far `result` is from fitting, summed over the limits as shares of each limit."""
        total = 0.0
        if self.max_latency_ms is not None:
            total += max(0.0, result.latency_ms / self.max_latency_ms - 1)
        if self.max_size_mb is not None:
            total += max(0.0, result.size_mb / self.max_size_mb - 1)
        if self.min_accuracy is not None:
            total += max(0.0, 1 - result.accuracy / self.min_accuracy)
        return total

    @property
    def given(self) -> bool:
        return any(value is not None for value in asdict(self).values())


@dataclass
class DeploymentReport:
    """Everything deploy-report measured; `choice`: the best form within the budget, `miss`: the line if none fits."""

    output_dir: str
    test_dir: str
    test_images: int
    machine: dict
    results: list[FormResult]
    notes: dict[str, list[str]]
    budget: Budget
    choice: FormResult | None = None
    miss: str | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- checks


def _check_arguments(runs, test_dir, output_dir, budget: Budget, repeats: int, batch_repeats: int, batch_size: int):
    if not runs:
        raise DeploymentError("give at least one RUN (a model folder written by hf-resnet train)")
    for run in runs:
        if not Path(run).is_dir():
            raise DeploymentError(f"RUN {run}: no such folder")
        if not (Path(run) / "config.json").is_file():
            raise DeploymentError(f"RUN {run}: the folder has no config.json; is it a saved model?")
    if not Path(test_dir).is_dir():
        raise DeploymentError(f"--test_dir {test_dir}: no such folder")
    for flag, value in (("--repeats", repeats), ("--batch_repeats", batch_repeats), ("--batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeploymentError(f"{flag} {value}: must be at least 1")
    for flag, value in (("--max_latency_ms", budget.max_latency_ms), ("--max_size_mb", budget.max_size_mb)):
        if value is not None and not value > 0:
            raise DeploymentError(f"{flag} {value:g}: must be above 0")
    if budget.min_accuracy is not None and not 0 < budget.min_accuracy <= 1:
        raise DeploymentError(f"--min_accuracy {budget.min_accuracy:g}: a share between 0 and 1, as evaluate reports")
    if problem := folder_write_problem(output_dir):
        raise DeploymentError(f"--output_dir {output_dir}: {problem}")


def _run_names(runs: list[Path]) -> list[str]:
    """Each run's name in the report: its folder name, or its path where two runs share a name."""
    names = [run.name or str(run) for run in runs]
    return [str(run) if names.count(name) > 1 else name for run, name in zip(runs, names)]


@dataclass
class _TestSet:
    pictures: list
    pixels: torch.Tensor
    labels: torch.Tensor
    files: list[str]


def _load_test_set(run: Path, test_dir: Path, batch_size: int):
    """The test images as evaluate loads and preprocesses them for `run` (its labels, its processor)."""
    from transformers import AutoConfig, AutoImageProcessor

    from ..data.arguments import DataArguments
    from ..data.image_datasets import EvalImages, _decode
    from ..data.sources import load_labelled_split
    from ..data.transforms import build_eval_transform
    from ..inference.classifier import checked_task

    config = AutoConfig.from_pretrained(run)
    task = checked_task(config, run)
    labels = [config.id2label[index] for index in range(config.num_labels)]
    images, _ = load_labelled_split(labels, DataArguments(), test_dir, "test", None, task.multi_hot)
    dataset = EvalImages(images, build_eval_transform(AutoImageProcessor.from_pretrained(run)))
    items = [dataset.dataset[index] for index in range(len(dataset))]
    pictures = [_decode(item["image"], index) for index, item in enumerate(items)]
    pixels = torch.cat([dataset.transform(pictures[i : i + batch_size]) for i in range(0, len(pictures), batch_size)])
    target = torch.tensor([item["label"] for item in items])
    files = [item["image"].get("path") for item in items]
    return (
        config,
        task,
        dataset.transform,
        _TestSet(pictures, pixels, target.float() if task.multi_hot else target, files),
    )


# ----------------------------------------------------------------------------- measuring


def _timings(call, arguments: list, repeats: int) -> list[float]:
    """Milliseconds of `call(arguments[i % len])` over `repeats` calls, after warm-up calls.

    Three warm-up calls, not one: oneDNN and OpenVINO finish compiling kernels over the first few calls.
    """
    for index in range(WARMUP_CALLS):
        call(arguments[index % len(arguments)])
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        call(arguments[index % len(arguments)])
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _p(times: list[float], q: float) -> float:
    return round(float(np.percentile(times, q)), 3)


def _headline(task, config, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The figure `evaluate` reports first: accuracy, or a multi-label model's exact-match share."""
    report = task.per_class_report(
        logits.numpy(), labels.numpy(), [config.id2label[i] for i in range(config.num_labels)]
    )
    names = task.metric_names(None)
    measured = task.measure(logits, labels, names, report, config)
    return float(measured.get("accuracy", measured.get("exact_match", next(iter(measured.values())))))


def _agreement(task, config, reference: torch.Tensor, candidate: torch.Tensor) -> float:
    from ..inference.onnx_export import compare_logits

    extra = task.compare(reference, candidate, config)
    return float(extra.get("label_set_agreement", compare_logits(reference, candidate)[1]))


def _fresh_process(form, run: Path, image: str, batch_size: int) -> dict[str, float]:
    """A new process serving `form`: seconds to its first answer and its peak resident MB, in all and its own share
    (after the imports every form shares), as `FormResult`'s fields."""
    command = [sys.executable, "-m", "hf_resnet.deployment.probe", form.name, str(run), form.path, image]
    seen: dict[str, float] = {}
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a chatty stderr cannot block the child
        start = time.perf_counter()
        with subprocess.Popen([*command, str(batch_size)], stdout=subprocess.PIPE, stderr=errors, text=True) as child:
            for line in child.stdout:
                if line.startswith("answered") and "answered" not in seen:
                    seen["answered"] = time.perf_counter() - start
                elif line.startswith("{"):
                    record = json.loads(line)
                    if "imported_rss_mb" in record:
                        seen["imported"] = time.perf_counter() - start
                    seen.update(record)
        if child.returncode != 0 or not {"answered", "imported", "peak_rss_mb"} <= set(seen):
            errors.seek(0)
            raise RuntimeError(f"{form.name}: the serving process failed: {errors.read().strip()[-500:]}")
    return {
        "first_answer_s": round(seen["answered"], 3),
        "peak_rss_mb": seen["peak_rss_mb"],
        "form_first_answer_s": round(seen["answered"] - seen["imported"], 3),
        "form_rss_mb": round(max(seen["peak_rss_mb"] - seen["imported_rss_mb"], 0.0), 1),
    }


def _measure_form(form, run_name, run, test, transform, task, config, reference, tta, repeats, batch_repeats, batch):
    from ..inference.prediction import predict

    forward = load_forward(form.name, run, form.path)
    chunks = [{"pixel_values": test.pixels[i : i + batch]} for i in range(0, len(test.pixels), batch)]
    logits = torch.cat([output for _, output in predict(forward, chunks, tta)])
    accuracy = _headline(task, config, logits, test.labels)
    agreement = 1.0 if reference is None else _agreement(task, config, reference, logits)
    singles = [test.pixels[i : i + 1] for i in range(len(test.pixels))]
    model_times = _timings(forward, singles, repeats)
    preprocess_times = _timings(lambda picture: transform([picture]), test.pictures, repeats)
    total_times = _timings(lambda picture: forward(transform([picture])), test.pictures, repeats)
    count = len(test.pictures)
    batch_pictures = [test.pictures[i % count] for i in range(batch)]
    batch_pixels = test.pixels[torch.arange(batch) % count]
    batch_ms = statistics.median(_timings(forward, [batch_pixels], batch_repeats))
    batch_total_ms = statistics.median(_timings(lambda p: forward(transform(p)), [batch_pictures], batch_repeats))
    result = FormResult(
        run=run_name,
        form=form.name,
        path=form.path,
        accuracy=accuracy,
        agreement=agreement,
        size_mb=form.size_mb,
        latency_ms=_p(total_times, 50),
        latency_ms_p95=_p(total_times, 95),
        model_latency_ms=_p(model_times, 50),
        model_latency_ms_p95=_p(model_times, 95),
        preprocess_ms=_p(preprocess_times, 50),
        images_per_second=round(batch / batch_total_ms * 1000.0, 1),
        model_images_per_second=round(batch / batch_ms * 1000.0, 1),
    )
    return result, logits


def _machine() -> dict:
    """The CPU and threads the figures were measured on: timings mean nothing without them."""
    from ..runtime.hardware import native_bf16_cpu

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16_cpu(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


# ----------------------------------------------------------------------------- choosing


def mark_pareto(results: list[FormResult]) -> None:
    """Mark the forms no other form beats on both accuracy and latency (at least as good on both, better on one)."""
    for result in results:
        result.pareto = not any(
            other.accuracy >= result.accuracy
            and other.latency_ms <= result.latency_ms
            and (other.accuracy > result.accuracy or other.latency_ms < result.latency_ms)
            for other in results
        )


def choose(results: list[FormResult], budget: Budget) -> tuple[FormResult | None, str | None]:
    """(the most accurate form within `budget`, fastest among equals; None and a line naming the closest form).

    >>> fast = FormResult("r", "onnx-int8", "", 0.9, 0.99, 1.0, 2.0, 3.0, 1.5, 2.5, 0.5, 900.0, 1000.0)
    >>> slow = FormResult("r", "pytorch-fp32", "", 0.95, 1.0, 4.0, 9.0, 12.0, 8.0, 11.0, 0.5, 200.0, 220.0)
    >>> choose([fast, slow], Budget(max_latency_ms=5))[0].form
    'onnx-int8'
    >>> print(choose([fast, slow], Budget(max_latency_ms=1))[1])
    no form fits the budget; closest: r onnx-int8 (latency 2 ms > --max_latency_ms 1)
    """
    fitting = [result for result in results if not budget.misses(result)]
    if fitting:
        return min(fitting, key=lambda r: (-r.accuracy, r.latency_ms)), None
    closest = min(results, key=lambda r: (budget.shortfall(r), -r.accuracy, r.latency_ms))
    missed = ", ".join(budget.misses(closest))
    return None, f"no form fits the budget; closest: {closest.run} {closest.form} ({missed})"


# ----------------------------------------------------------------------------- writing


def _markdown(report: DeploymentReport, batch_size: int) -> str:
    machine = report.machine
    lines = [
        "# Deployment report",
        "",
        f"{report.test_images} test images from `{report.test_dir}`; measured on {machine['cpu']} "
        f"({machine['cpus']} CPUs, {machine['torch_threads']} torch threads"
        + (f", GPU {machine['gpu']}" if machine["gpu"] else "")
        + ").",
        "",
        f"Latency is at batch 1 with preprocessing included (model alone beside it); throughput at batch "
        f"{batch_size}; size is the file served; peak RSS and the first answer come from a fresh process serving "
        "the form. **Bold**: on the accuracy-latency Pareto front.",
        "",
    ]
    for run in dict.fromkeys(result.run for result in report.results):
        lines += [f"## {run}", "", markdown_table([asdict(r) for r in report.results if r.run == run]), ""]
        lines += [f"- {note}" for note in report.notes.get(run, [])] + [""]
    if report.choice is not None:
        lines += [f"**Chosen**: {report.choice.run} {report.choice.form} ({report.choice.path})", ""]
    elif report.miss:
        lines += [f"**{report.miss}**", ""]
    lines += [f"![accuracy against latency]({PLOT_PNG})", ""]
    return "\n".join(lines)


def plot_accuracy_latency(results: list[FormResult], path: Path) -> Path:
    """Accuracy against batch-1 latency (log scale), every form of every run, the Pareto front joined."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for run in dict.fromkeys(result.run for result in results):
        mine = [r for r in results if r.run == run]
        ax.scatter([r.latency_ms for r in mine], [r.accuracy for r in mine], label=run, s=30)
        for r in mine:
            ax.annotate(r.form, (r.latency_ms, r.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in results if r.pareto), key=lambda r: r.latency_ms)
    ax.step([r.latency_ms for r in front], [r.accuracy for r in front], where="post", color="black", lw=1,
            label="Pareto front")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("latency at batch 1, preprocessing included (ms, log scale)")
    ax.set_ylabel("accuracy on the test images")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


def _write(report: DeploymentReport, runs: dict[str, Path], batch_size: int) -> None:
    out = Path(report.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy_latency(report.results, out / PLOT_PNG)
    (out / REPORT_MD).write_text(_markdown(report, batch_size))
    report.files = [str(out / name) for name in (REPORT_MD, REPORT_JSON, PLOT_PNG)]
    report.files += [str(run / RUN_COPY) for run in runs.values()]  # the copies the runs' model cards render
    data = report.to_dict()
    (out / REPORT_JSON).write_text(json.dumps(data, indent=2) + "\n")
    for name, run in runs.items():
        own = {**data, "run": name, "results": [row for row in data["results"] if row["run"] == name]}
        own["notes"] = {name: data["notes"].get(name, [])}
        (run / RUN_COPY).write_text(json.dumps(own, indent=2) + "\n")


# ----------------------------------------------------------------------------- the command


def deploy_report(
    runs: list[str | os.PathLike],
    test_dir: str | os.PathLike,
    output_dir: str | os.PathLike = "deploy_report",
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    min_accuracy: float | None = None,
    calibration_dir: str | os.PathLike | None = None,
    repeats: int = 50,
    batch_repeats: int = 5,
    batch_size: int = 32,
    fresh_process: bool = True,
) -> DeploymentReport:
    """Measure every form of every run on `test_dir`; write report.md, report.json and the plot in `output_dir`.

    Exported forms (ONNX, OpenVINO) are written under `output_dir/forms/<run>/`; an int8 model that
    agrees with fp32 on too few test images is refused there and listed in the notes. With a budget
    (`max_latency_ms`, `max_size_mb`, `min_accuracy`), `choice` is the most accurate form within it
    (fastest among equals); when none fits, `miss` names the closest. Each run folder keeps its part of
    the report as deployment.json, which its model card shows. `fresh_process=False` skips the
    per-form processes that measure the first answer and the peak memory.
    """
    budget = Budget(max_latency_ms, max_size_mb, min_accuracy)
    paths = [Path(os.fspath(run)).expanduser() for run in runs]
    test_dir = Path(test_dir)
    _check_arguments(paths, test_dir, output_dir, budget, repeats, batch_repeats, batch_size)
    names = _run_names(paths)
    loaded = {name: _load_test_set(run, test_dir, batch_size) for name, run in zip(names, paths)}  # refusals first

    from ..model.tta import resolve_mode

    results, notes, count = [], {}, 0
    for name, run in zip(names, paths):
        config, task, transform, test = loaded[name]
        count = len(test.pictures)
        tta = resolve_mode(None, getattr(config, "tta", None))  # as evaluate scores it
        calibration, note = calibration_images(run, calibration_dir, test_dir)
        folder = Path(output_dir) / "forms" / name.replace("/", "--")
        forms, notes[name] = available_forms(run, folder, test_dir, calibration, task.agrees_with)
        notes[name] += [note] if note and any("int8" in form.name for form in forms) else []
        reference = None
        for form in forms:
            result, logits = _measure_form(
                form, name, run, test, transform, task, config, reference, tta, repeats, batch_repeats, batch_size
            )
            if form.name == REFERENCE:
                reference = logits
            if fresh_process:
                for key, value in _fresh_process(form, run, test.files[0], batch_size).items():
                    setattr(result, key, value)
            results.append(result)
    mark_pareto(results)
    report = DeploymentReport(str(output_dir), str(test_dir), count, _machine(), results, notes, budget)
    if budget.given:
        report.choice, report.miss = choose(results, budget)
    _write(report, dict(zip(names, paths)), batch_size)
    return report
