"""timm's ResNet checkpoints through the same recipe: served by the local Hub as the real ones are, fine-tuned,
loaded back by transformers' pipeline and by classify, exported to ONNX.

The checkpoint is a real timm architecture (`resnet10t`, timm's smallest ResNet) with random weights, written in
the Hub's layout by timm itself (`save_for_hf`; the Hub's config.json has no `model_args`) and set to 32 px, so
one fine-tuning run takes seconds; every test of this module shares it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, multi_shape_image, shape_image
from hub_server import HubServer
from huggingface_hub import HfApi, constants
from safetensors.torch import load_file
from transformers import pipeline

import hf_resnet
from hf_resnet.families import family_of
from hf_resnet.families.loading import ModelLoadError
from hf_resnet.families.timm_resnet import FAMILY as TIMM_RESNET

REPO = "timm/resnet10t.tiny_test"
SIZE = 32
FAST = dict(per_device_train_batch_size=12, per_device_eval_batch_size=32, report_to="none", disable_tqdm=True)


def save_timm_checkpoint(folder: Path, architecture: str = "resnet10t", num_classes: int = 5) -> Path:
    """A timm checkpoint as the Hub holds it: timm's own files, no `model_args`, preprocessing at 32 px."""
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    for module in model.modules():  # BatchNorm statistics that are not the defaults, so "unchanged" means something
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    save_for_hf(model, folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_args")
    config["pretrained_cfg"] |= {"input_size": [3, SIZE, SIZE], "test_input_size": [3, SIZE, SIZE]}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The local Hub serving the timm checkpoint at REPO, with this process's huggingface_hub pointed at it."""
    root = tmp_path_factory.mktemp("timm_hub")
    with HubServer() as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", server.url)
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        patch.setattr(constants, "HF_HUB_CACHE", str(root / "cache"))
        server.create_repo(REPO)
        HfApi(endpoint=server.url).upload_folder(repo_id=REPO, folder_path=save_timm_checkpoint(root / "checkpoint"))
        yield server


@pytest.fixture(scope="module")
def finetuned(hub, tmp_path_factory):
    """One fine-tuning run of the Hub's timm checkpoint with the default recipe; its log, and the weights before."""
    root = tmp_path_factory.mktemp("timm_run")
    train = make_image_folder(root / "train", per_class=16, seed=1)
    val = make_image_folder(root / "val", per_class=6, seed=2)
    from huggingface_hub import hf_hub_download

    before = load_file(hf_hub_download(REPO, "model.safetensors"))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("hf_resnet").addHandler(handler)
    try:
        result = hf_resnet.finetune(
            model_name_or_path=REPO,
            train_dir=str(train),
            validation_dir=str(val),
            output_dir=str(root / "out"),
            num_train_epochs=2,
            logging_steps=1,
            **FAST,
        )
    finally:
        logging.getLogger("hf_resnet").removeHandler(handler)
    return result, before, "\n".join(record.getMessage() for record in records), val


def test_a_timm_resnet_checkpoint_fine_tunes_with_the_default_recipe(finetuned):
    result, before, log, _ = finetuned
    after = load_file(str(result.output_dir / "model.safetensors"))  # in timm's own key names, as the Hub's
    assert set(after) == set(before)
    moved = set()
    for name, tensor in after.items():
        part = TIMM_RESNET.part_of(f"timm_model.{name}")
        if part in ("embedder", "stage1"):  # frozen by default: weights and BatchNorm statistics, bit for bit
            assert torch.equal(tensor, before[name]), name
        elif part != "head" and not torch.equal(tensor, before[name]):
            moved.add(part)
    assert moved == {"stage2", "stage3", "stage4"}
    assert "frozen: embedder, stage1; learning rates: head 0.001, stage4 1e-05, stage3 1e-05, stage2 1e-05" in log
    history = json.loads((result.output_dir / "trainer_state.json").read_text())["log_history"]
    logged = next(entry for entry in history if "learning_rate/head" in entry)
    assert {"learning_rate/stage4", "learning_rate/stage2"} <= set(logged)
    assert "learning_rate/embedder" not in logged
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["label_names"] == ["circle", "hbar", "vbar"] and config["architecture"] == "resnet10t"
    card = (result.output_dir / "README.md").read_text()
    assert f"base_model: {REPO}" in card and "A timm ResNet (resnet10t) image classifier fine-tuned from" in card


def test_the_output_loads_in_the_transformers_pipeline_and_in_classify_with_the_same_answer(finetuned):
    result, _, _, val = finetuned
    images = sorted(val.rglob("*.png"))[::4]
    classifier = pipeline("image-classification", model=str(result.output_dir), device="cpu")
    for image in images:
        expected = classifier(str(image), top_k=3)
        answer = hf_resnet.classify(str(image), model=str(result.output_dir), top_k=3, precision="fp32")
        assert answer[0]["label"] == expected[0]["label"], image
        assert [entry["label"] for entry in answer] == [entry["label"] for entry in expected]
    # hf-resnet evaluate scores the validation folder as training's last evaluation did.
    trained = json.loads((result.output_dir / "eval_results.json").read_text())
    scored = hf_resnet.evaluate(str(result.output_dir), test_dir=str(val), output_dir=str(val.parent / "scores"))
    assert scored.metrics["test_accuracy"] == pytest.approx(trained["eval_accuracy"])


def test_the_output_exports_to_onnx_with_the_parity_check(finetuned, tmp_path):
    result, _, _, val = finetuned
    report = hf_resnet.export(str(result.output_dir), out=tmp_path / "onnx", sample_images=val, latency_repeats=1)
    assert report.onnx.top1_agreement == 1.0 and report.onnx.max_logit_diff < 1e-3
    image = next(val.rglob("*.png"))
    onnx = hf_resnet.classify(str(image), model=str(tmp_path / "onnx"), backend="onnx", top_k=1)
    torch_answer = hf_resnet.classify(str(image), model=str(result.output_dir), top_k=1, precision="fp32")
    assert onnx[0]["label"] == torch_answer[0]["label"]


def test_grad_cam_explains_the_timm_network_on_its_last_stage(finetuned, tmp_path):
    result, _, _, val = finetuned
    explanation = hf_resnet.explain(next(val.rglob("*.png")), model=str(result.output_dir), out=tmp_path / "cam.png")
    assert explanation.heatmap.shape == (SIZE, SIZE) and 0.0 <= float(explanation.heatmap.min()) <= 1.0
    assert (tmp_path / "cam.png").is_file()
    # The layer the family names is the network's last stage: its output is the wrapper's own last hidden state.
    model = result.model
    kept = []
    hook = TIMM_RESNET.gradcam_layer(model).register_forward_hook(lambda _m, _i, output: kept.append(output))
    with torch.no_grad():
        outputs = model(pixel_values=torch.randn(2, 3, 64, 64), output_hidden_states=True)
    hook.remove()
    assert kept[-1].shape == (2, 512, 2, 2) and torch.equal(kept[-1], outputs.hidden_states[-1])


def test_the_output_pushes_with_a_card_naming_the_base_model_and_loads_back_from_the_hub(finetuned, hub):
    result, _, _, val = finetuned
    hf_resnet.push(result.output_dir, "user/timm-shapes")
    pushed = hub.files("user/timm-shapes")
    card = pushed["README.md"].decode()
    assert f"base_model: {REPO}" in card and "- timm" in card and "A timm ResNet (resnet10t) image classifier" in card
    assert "pretrained_cfg" in json.loads(pushed["config.json"])  # the processor travels in config.json
    image = str(next(val.rglob("*.png")))
    from_hub = pipeline("image-classification", model="user/timm-shapes", device="cpu")(image, top_k=1)
    assert from_hub == pipeline("image-classification", model=str(result.output_dir), device="cpu")(image, top_k=1)


def test_a_pushed_timm_fine_tune_loads_in_timm_with_the_transformers_logits_and_preprocessing(finetuned, hub):
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    result, _, _, val = finetuned
    saved = json.loads((result.output_dir / "config.json").read_text())
    assert isinstance(saved["model_args"], dict)  # transformers would write null, which timm cannot read
    card = (result.output_dir / "README.md").read_text()
    # The base's card names no license; its config.json's pretrained_cfg (timm's) does.
    assert "license: apache-2.0" in card and "inherited from the pretrained_cfg in config.json of" in card
    hf_resnet.push(result.output_dir, "user/timm-round-trip")
    pushed = hub.files("user/timm-round-trip")
    assert "license: apache-2.0" in pushed["README.md"].decode()
    assert not [name for name in pushed if name.endswith((".bin", ".pt", ".pth", ".pkl"))]  # no pickles

    from_timm = timm.create_model("hf-hub:user/timm-round-trip", pretrained=True).eval()
    from_file = timm.create_model(
        saved["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(result.output_dir / "model.safetensors"), num_classes=3),
    ).eval()
    from_transformers = AutoModelForImageClassification.from_pretrained("user/timm-round-trip").eval()
    processor = AutoImageProcessor.from_pretrained("user/timm-round-trip")
    images = [Image.open(path).convert("RGB") for path in sorted(val.rglob("*.png"))[::6]]
    pixels = processor(images, return_tensors="pt").pixel_values
    transform = create_transform(**resolve_data_config({}, model=from_timm))
    assert torch.allclose(torch.stack([transform(image) for image in images]), pixels, atol=1e-6)
    with torch.no_grad():
        expected = from_transformers(pixel_values=pixels).logits
        assert (from_timm(pixels) - expected).abs().max() < 1e-5
        assert (from_file(pixels) - expected).abs().max() < 1e-5
    assert from_timm.pretrained_cfg["label_names"] == ["circle", "hbar", "vbar"]


def test_a_timm_architecture_trains_from_scratch_with_drop_path_and_loads_in_the_pipeline_and_in_timm(tmp_path):
    import timm

    train = make_image_folder(tmp_path / "train", per_class=8, seed=1)
    val = make_image_folder(tmp_path / "val", per_class=3, seed=2)
    result = hf_resnet.finetune(
        arch="resnet10t",
        image_size=SIZE,
        drop_path_rate=0.1,
        drop_rate=0.25,
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "out"),
        num_train_epochs=1,
        **FAST,
    )
    network = result.model.timm_model
    assert network.layer4[-1].drop_path.drop_prob == pytest.approx(0.1) and network.drop_rate == 0.25
    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert recipe["model"]["arch"] == "resnet10t" and recipe["model"]["drop_path_rate"] == 0.1
    assert recipe["recipe"]["augmentation"]["drop_rate"] == 0.25
    assert "| drop_path_rate | 0.1 |" in (result.output_dir / "README.md").read_text()
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["model_args"] == {"drop_path_rate": 0.1, "drop_rate": 0.25}  # timm rebuilds the same network

    image = str(next(val.rglob("*.png")))
    answer = pipeline("image-classification", model=str(result.output_dir), device="cpu")(image, top_k=3)
    assert {entry["label"] for entry in answer} == {"circle", "hbar", "vbar"}
    from_timm = timm.create_model(
        "resnet10t",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(result.output_dir / "model.safetensors"), num_classes=3),
    ).eval()
    pixels = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (from_timm(pixels) - result.model.eval()(pixel_values=pixels).logits).abs().max() < 1e-5


def test_multi_label_with_ema_tta_and_gradual_unfreezing_on_a_timm_checkpoint(hub, tmp_path):
    rng = np.random.default_rng(3)
    for split, count in (("train", 24), ("val", 9)):
        folder = tmp_path / split
        folder.mkdir()
        rows = []
        for i in range(count):
            present = [index for index in range(3) if rng.random() < 0.5]
            multi_shape_image(present, rng).save(folder / f"{i}.png")
            rows.append(
                json.dumps({"file_name": f"{i}.png", "labels": [["square", "hbar", "vbar"][j] for j in present]})
            )
        (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    result = hf_resnet.finetune(
        model_name_or_path=REPO,
        train_dir=str(tmp_path / "train"),
        validation_dir=str(tmp_path / "val"),
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        unfreeze_at_epoch=1,
        ema_decay=0.9,
        tta="flip",
        **FAST,
    )
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["tta"] == "flip"
    assert len(config["thresholds"]) == 3
    history = json.loads((result.output_dir / "trainer_state.json").read_text())["log_history"]
    assert any("learning_rate/stage1" in entry for entry in history)  # thawed at epoch 1
    assert "eval_ema_map" in json.loads((result.output_dir / "eval_results.json").read_text())
    answer = hf_resnet.classify(shape_image(1, rng), model=str(result.output_dir), top_k=None)
    assert {entry["label"] for entry in answer} <= {"square", "hbar", "vbar"}


def test_a_network_of_no_supported_family_is_refused_in_one_line_before_images_are_read(tmp_path, capfd, monkeypatch):
    from transformers import ViTConfig, ViTForImageClassification

    from hf_resnet.cli import main as cli
    from hf_resnet.training import run as run_module

    def work(*args, **kwargs):
        raise AssertionError("work started before the model was refused")

    for name in ("load_image_data", "load_stream", "build_model"):
        monkeypatch.setattr(run_module, name, work)
    folder = tmp_path / "vit"
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1)
    config.num_attention_heads = 1
    ViTForImageClassification(config).save_pretrained(folder)  # a real checkpoint: only its family is wrong
    train = make_image_folder(tmp_path / "train", per_class=2)
    capfd.readouterr()
    code = cli(
        [
            "train",
            "--model_name_or_path",
            str(folder),
            "--train_dir",
            str(train),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    _, stderr = capfd.readouterr()
    assert code == 2, stderr[-2000:]
    assert stderr.strip().splitlines() == [
        f"hf-resnet train: error: --model_name_or_path {folder}: a 'vit' model: hf_resnet fine-tunes "
        "transformers ResNet and timm ResNet checkpoints only (README: Supported model families)"
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelLoadError, match="a 'timm_wrapper' \\(convnext_tiny\\) model"):
        family_of({"model_type": "timm_wrapper", "architecture": "convnext_tiny"})
