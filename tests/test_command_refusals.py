"""evaluate, classify, explain, export and demo: bad input is one line and exit code 2, before the model loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, refused_line, save_tiny_checkpoint, shape_image

from hf_resnet.inference import classifier as classifier_module

# (command line, with {model}, {image}, {folder}, {file}, {train} standing for paths made by the test; its error line)
BAD_INPUT = [
    (["export", "--model", "{model}", "--repeats", "0"], "hf-resnet export: --repeats 0: must be at least 1"),
    (["export", "--model", "{model}", "--out", "{file}"], "hf-resnet export: --out {file}: is a file; pass a folder"),
    (["demo", "--model", "{model}", "--top-k", "0"], "hf-resnet demo: --top-k 0: must be a positive number of labels"),
    (["demo", "--model", "{model}", "--top-k", "-1"], "hf-resnet demo: --top-k -1: must be a positive number"),
    (
        ["demo", "--model", "{model}", "--server_port", "99999"],
        "hf-resnet demo: --server_port 99999: must be a TCP port",
    ),
    (
        ["explain", "{image}", "--model", "{model}", "--out", "{folder}"],
        "hf-resnet explain: --out {folder}: is a folder; pass the image's file name, e.g. cam.png",
    ),
    (
        ["explain", "{image}", "--model", "{model}", "--out", "{folder}/cam"],
        "hf-resnet explain: --out {folder}/cam: no extension: end the name with .png or .jpg",
    ),
    (
        ["evaluate", "--model", "{model}", "--test_dir", "{train}", "--max_samples", "0"],
        "hf-resnet evaluate: --max_samples 0: must be at least 1 (leave it out to score every image)",
    ),
    (
        ["lr-find", "--plot", "{folder}", "--model_name_or_path", "{model}", "--train_dir", "{train}"],
        "hf-resnet lr-find: error: --plot {folder}: is a folder; pass the plot's file name, e.g. {folder}/lr_find.png",
    ),
    (
        ["lr-find", "--num_step", "5", "--model_name_or_path", "{model}", "--train_dir", "{train}"],
        "hf-resnet lr-find: error: no such flag here: --num_step (abbreviations are not accepted; in full: "
        "--num_steps); `hf-resnet train --help` lists the flags",
    ),
    (
        ["search", "--n_trial", "5", "--model_name_or_path", "{model}", "--train_dir", "{train}"],
        "hf-resnet search: error: no such flag here: --n_trial (abbreviations are not accepted; in full: "
        "--n_trials); `hf-resnet train --help` lists the flags",
    ),
]


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    model = save_tiny_checkpoint(tmp_path / "model")
    shape_image(0, np.random.default_rng(0)).save(tmp_path / "cat.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    train = make_image_folder(tmp_path / "train", per_class=1, classes=("class_0", "class_1"))
    return dict(
        model=str(model),
        image=str(tmp_path / "cat.png"),
        folder=str(tmp_path / "folder"),
        file=str(tmp_path / "notes.txt"),
        train=str(train),
    )


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[" ".join(argv[:1] + argv[-2:]) for argv, _ in BAD_INPUT])
def test_a_bad_argument_is_one_line_and_exit_2_before_the_model_loads(paths, argv, message, monkeypatch, capfd):
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the argument was refused")

    monkeypatch.setattr(classifier_module, "_load_cached", load)
    monkeypatch.setattr("hf_resnet.evaluation.run._load_labels", load)
    before = sorted(Path(paths["folder"]).parent.rglob("*"))
    assert refused_line([arg.format(**paths) for arg in argv], capfd).startswith(message.format(**paths))
    assert sorted(Path(paths["folder"]).parent.rglob("*")) == before


@pytest.mark.parametrize("stored", [float("nan"), 2.0, {"cow": 0.3}, [[0.5], 0.5, 0.5]], ids=repr)
def test_thresholds_a_model_cannot_answer_with_are_one_line_for_classify_and_evaluate(paths, stored, capfd):
    config_file = Path(paths["model"]) / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "problem_type": "multi_label_classification", "thresholds": stored}))
    expected = f"--model {paths['model']}: config.json thresholds "
    assert refused_line(["classify", paths["image"], "--model", paths["model"]], capfd).startswith(
        f"hf-resnet classify: {expected}"
    )
    assert refused_line(["evaluate", "--model", paths["model"], "--test_dir", paths["train"]], capfd).startswith(
        f"hf-resnet evaluate: {expected}"
    )


def test_evaluate_into_a_read_only_folder_is_refused_before_the_model_loads(paths, tmp_path, monkeypatch, capfd):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    model = Path(paths["model"])
    model.chmod(0o555)  # the default output folder, where --update_card writes the card
    if os.geteuid() == 0:  # root writes anywhere; let the check see what any other user would
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: Path(path) not in (read_only, model) and real_access(path, mode)
        )
    try:
        given = ["evaluate", "--model", paths["model"], "--test_dir", paths["train"], "--output_dir", str(read_only)]
        assert (
            refused_line(given, capfd)
            == f"hf-resnet evaluate: --output_dir {read_only}: not writable; pass a folder you can write to"
        )
        assert refused_line(
            ["evaluate", "--model", paths["model"], "--test_dir", paths["train"], "--update_card"], capfd
        ) == (
            f"hf-resnet evaluate: --model {model}: not writable; pass a folder you can write to as --output_dir "
            "(without it, results go beside the model)"
        )
    finally:
        model.chmod(0o755)
    assert list(read_only.iterdir()) == []


def test_a_truncated_onnx_file_is_one_line_saying_to_export_again(paths, capfd):
    import onnx
    from onnx import TensorProto, helper

    # A real ONNX file (an identity over pixel_values), cut in half as an interrupted copy leaves it.
    tensor = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["pixel_values"], ["logits"])], "cut", [tensor], [tensor])
    onnx_file = Path(paths["model"]) / "model.onnx"
    onnx.save(helper.make_model(graph), onnx_file)
    onnx_file.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])
    line = refused_line(["classify", paths["image"], "--model", paths["model"], "--backend", "onnx"], capfd)
    assert line.startswith(f"hf-resnet classify: --model {onnx_file}: ONNX Runtime cannot load it (")
    assert line.endswith("the file is truncated or not ONNX: export it again (hf-resnet export --model FOLDER)")


def test_explain_on_a_network_of_no_supported_family_is_one_line(tmp_path, paths, capfd):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path / "vit"
    config = ViTConfig(image_size=32, patch_size=16, hidden_size=8, intermediate_size=8, num_hidden_layers=1)
    config.num_attention_heads = 1
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    assert refused_line(
        ["explain", paths["image"], "--model", str(folder), "--out", str(tmp_path / "cam.png")], capfd
    ) == (
        "hf-resnet explain: a 'vit' model: hf_resnet fine-tunes transformers ResNet and timm ResNet checkpoints only "
        "(README: Supported model families)"
    )
    assert not (tmp_path / "cam.png").exists()


def test_evaluate_update_card_with_a_readme_that_cannot_be_written_is_one_line_before_any_work(paths, capfd):
    card = Path(paths["model"]) / "README.md"
    card.mkdir()  # a README.md that is not a file (file permissions do not stop root, which the tests may run as)
    before = sorted(Path(paths["model"]).rglob("*"))
    argv = ["evaluate", "--model", paths["model"], "--test_dir", paths["train"], "--update_card"]
    assert refused_line(argv, capfd) == (
        f"hf-resnet evaluate: --update_card: {card} cannot be written (a folder); make it a writable file, "
        "or leave out --update_card"
    )
    assert sorted(Path(paths["model"]).rglob("*")) == before  # no test_results.json written before the refusal
