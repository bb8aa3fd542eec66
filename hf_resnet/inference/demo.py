"""`hf-resnet demo`: a page where people try a model, the way a shared classifier is judged on the Hub.

The page is a Gradio app over the same `classify` and `explain` the command line and Python API
use, so what a visitor sees is what `hf_resnet.classify` answers: the top labels with calibrated
scores, a Grad-CAM overlay for the top one, and the model's facts read from its folder (labels,
validation accuracy, base model, card). A Space made by `hf-resnet push --space` runs this same
code from a few lines of `app.py`, so the local demo and the Space cannot drift apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.examples import EXAMPLES_DIR, find_examples
from ..tasks import SINGLE_LABEL, task_for
from ..tasks.multi_label import thresholds

#: What `pip install "hf_resnet[demo]"` provides; said in one line when it is missing.
GRADIO_MISSING = 'Gradio is not installed; the demo needs this optional extra: pip install "hf_resnet[demo]"'
#: Files a demo needs from a Hub model repo: weights, configs, results, card and example images.
HUB_FILES = ("*.json", "*.safetensors", "README.md", f"{EXAMPLES_DIR}/*")
#: Labels shown for a single-label model; a visitor reads a few, not a thousand.
DEFAULT_TOP_K = 5
#: The largest TCP port number.
MAX_PORT = 65535
#: Pixels of height for the input and Grad-CAM images: a 32 px or 224 px model view is shown large enough to read.
IMAGE_HEIGHT = 320


class DemoError(ValueError):
    """A demo that cannot start; the message names the argument and what to do."""


@dataclass
class ModelFacts:
    """What the page says about the model, read from its folder."""

    labels: list[str]
    accuracy: float | None = None
    eval_samples: int | None = None
    base_model: str = "unknown"
    card: str | None = None  #: a URL for a Hub model, a path for a local folder
    calibrated: bool = False
    problem_type: str = SINGLE_LABEL
    thresholds: list[float] = field(default_factory=list)
    examples: list[Path] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            f"**{len(self.labels)} labels**: "
            + ", ".join(self.labels[:30])
            + (" ..." if len(self.labels) > 30 else "")
        ]
        if self.accuracy is not None:
            on = f" on {self.eval_samples} validation images" if self.eval_samples else " on validation"
            lines.append(f"**Accuracy**: {self.accuracy:.1%}{on}")
        lines.append(f"**Base model**: {self.base_model}")
        calibration = "calibrated (temperature scaling)" if self.calibrated else "uncalibrated (no temperature fitted)"
        lines.append(f"**Scores**: {calibration}")
        if self.card:
            card = f"[{self.card}]({self.card})" if self.card.startswith("http") else f"`{self.card}`"
            lines.append(f"**Model card**: {card}")
        return "  \n".join(lines)


def _gradio():
    try:
        import gradio
    except ImportError as error:
        raise DemoError(GRADIO_MISSING) from error
    return gradio


def model_folder(model: str | os.PathLike) -> tuple[Path, str | None]:
    """(local folder holding the model, Hub id or None): a Hub model is downloaded once into the HF cache."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DemoError(f"--model {model}: no config.json there; pass the output folder of a finished run")
        return path, None
    if path.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise DemoError(f"--model {model}: no such model folder; pass an output folder or a Hub id (user/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(model), allow_patterns=list(HUB_FILES))), str(model)
    except Exception as error:  # not found, private, offline: all the same to the person who typed the id
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DemoError(f"--model {model}: not a local folder, and the Hub did not give it ({reason})") from error


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _base_model(recipe: dict) -> str:
    """How the weights started, in the card's words (a local checkpoint by name, never "from scratch" for one)."""
    if not recipe:
        return "unknown (no recipe.json)"
    from ..hub.card import describe_base_model

    return describe_base_model(recipe)[1]


def read_facts(folder: Path, config, hub_id: str | None = None) -> ModelFacts:
    """The page's facts from a model folder: config labels, eval results, recipe, card, examples."""
    from huggingface_hub import constants

    labels = [config.id2label[i] for i in range(config.num_labels)]
    results = _read_json(folder / "eval_results.json") or _read_json(folder / "all_results.json")
    card = folder / "README.md"
    return ModelFacts(
        labels=labels,
        accuracy=results.get("eval_accuracy"),
        eval_samples=results.get("eval_samples"),
        base_model=_base_model(_read_json(folder / "recipe.json")),
        card=f"{constants.ENDPOINT}/{hub_id}" if hub_id else (str(card) if card.is_file() else None),
        calibrated=float(getattr(config, "calibration_temperature", None) or 1.0) != 1.0,
        problem_type=task_for(config).problem_type,
        thresholds=thresholds(config),
        examples=find_examples(folder),
    )


def predict(classifier, facts: ModelFacts, image: Any, top_k: int = DEFAULT_TOP_K) -> tuple[dict[str, float], Any]:
    """({label: score} to show, Grad-CAM overlay of the top label) for one image, as the page shows them.

    A multi-label model shows every label over its threshold; a single-label one its `top_k` best.
    """
    from .classifier import classify
    from .gradcam import explain

    answer = classify(image, model=classifier, top_k=None)
    shown = task_for(facts.problem_type).shown(answer, dict(zip(facts.labels, facts.thresholds)), top_k)
    overlay = explain(image, model=classifier).overlay()
    return {entry["label"]: entry["score"] for entry in shown}, overlay


def check_settings(top_k: int, server_port: int | None = None) -> None:
    """The demo's own arguments, refused in one line before Gradio or the model is loaded."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise DemoError(f"--top-k {top_k}: must be a positive number of labels to show")
    if server_port is not None and not 1 <= server_port <= MAX_PORT:
        raise DemoError(f"--server_port {server_port}: must be a TCP port, 1 to {MAX_PORT} (leave it out for 7860)")


def build_demo(model: str | os.PathLike, device: str | None = None, top_k: int = DEFAULT_TOP_K):
    """The Gradio `Blocks` of the demo for a model folder or Hub id (call `.launch()` on it, or use `launch`)."""
    check_settings(top_k)
    folder, hub_id = model_folder(model)
    return _build(folder, hub_id, device, top_k)


def _build(folder: Path, hub_id: str | None, device: str | None, top_k: int):
    gr = _gradio()
    from .classifier import load_classifier

    classifier = load_classifier(folder, device=device)
    facts = read_facts(folder, classifier.config, hub_id)
    name = hub_id or Path(folder).resolve().name

    def run(image):
        if image is None:  # the image was cleared
            return None, None
        shown, overlay = predict(classifier, facts, image, top_k)
        return shown, _enlarged(overlay)

    with gr.Blocks(title=f"{name}: image classifier demo") as demo:
        gr.Markdown(f"# {name}\nUpload or paste an image, or pick an example, then press **Classify**.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", sources=["upload", "clipboard"], label="Image", height=IMAGE_HEIGHT)
                button = gr.Button("Classify", variant="primary")
                if facts.examples:
                    gr.Examples(
                        [str(path) for path in facts.examples],
                        inputs=image,
                        example_labels=[_example_label(path, facts.labels) for path in facts.examples],
                        label="Examples from the validation set",
                    )
            with gr.Column():
                scores = gr.Label(num_top_classes=len(facts.labels), label="Prediction", elem_id="prediction")
                overlay = gr.Image(
                    type="pil", label="Grad-CAM: where the top label was seen", interactive=False, height=IMAGE_HEIGHT
                )
        gr.Markdown(facts.markdown(), elem_id="facts")
        button.click(run, inputs=image, outputs=[scores, overlay], api_name="classify")
        image.upload(run, inputs=image, outputs=[scores, overlay], api_name=False)
    return demo


def _enlarged(image):
    # The overlay is at the model's input size (224 px, or 32 px for a toy model): blown up so its cells can be seen.
    from PIL import Image

    factor = max(1, IMAGE_HEIGHT // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _example_label(path: Path, labels: list[str]) -> str:
    index = path.name.split("_", 1)[0]
    return labels[int(index)] if index.isdigit() and int(index) < len(labels) else path.stem


def launch(
    model: str | os.PathLike,
    server_name: str | None = None,
    server_port: int | None = None,
    share: bool | None = None,
    device: str | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> None:
    """Build the demo and serve it (blocking) on localhost, or where Gradio's `server_name`/`share` say."""
    check_settings(top_k, server_port)
    _gradio()  # before any download: a missing extra is the first thing to say
    folder, hub_id = model_folder(model)
    demo = _build(folder, hub_id, device, top_k)
    # Only the example images are served from the model folder; never its weights or other files.
    allowed = [str(folder / EXAMPLES_DIR)]
    demo.launch(server_name=server_name, server_port=server_port, share=share, allowed_paths=allowed)
