"""Knowledge distillation: `hf-resnet distill` and `hf_resnet.distill` learn from a teacher's softened outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MULTI_SHAPES, make_image_folder, make_multi_label_folder, refused_line, save_tiny_checkpoint
from safetensors.torch import load_file

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config.checks import ArgumentError
from hf_resnet.config.plan import Distillation
from hf_resnet.training.distill import DistillationLoss, soft_target_loss

SHAPES = ("circle", "hbar", "vbar")
QUIET = dict(report_to="none", disable_tqdm=True, image_cache="off", keep_examples=False, save_strategy="no")


def _labelled(names) -> dict:
    return dict(id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """Shape folders, a teacher of their classes at another size than the student's, and a tiny student checkpoint."""
    root = tmp_path_factory.mktemp("distill")
    teacher = save_tiny_checkpoint(root / "teacher", seed=3, **_labelled(SHAPES))
    processor = json.loads((teacher / "preprocessor_config.json").read_text())
    (teacher / "preprocessor_config.json").write_text(json.dumps({**processor, "size": {"shortest_edge": 40}}))
    return dict(
        train=make_image_folder(root / "train", per_class=8, seed=1),
        validation=make_image_folder(root / "validation", per_class=4, seed=2),
        teacher=teacher,
        student=save_tiny_checkpoint(root / "student", seed=1),
        stranger=save_tiny_checkpoint(root / "stranger", seed=4),  # classes class_0..class_2
    )


def test_the_distillation_term_is_the_temperature_squared_kl_divergence_computed_by_hand():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
    p = torch.softmax(teacher / 2, dim=-1)
    q = torch.softmax(student / 2, dim=-1)
    by_hand = 4 * (p * (p.log() - q.log())).sum(dim=-1)
    assert torch.allclose(soft_target_loss(student, teacher, 2.0), by_hand)
    # Multi-label: per class, the binary KL divergence of the sigmoids, averaged over the classes.
    p, q = torch.sigmoid(teacher / 2), torch.sigmoid(student / 2)
    binary = p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())
    assert torch.allclose(soft_target_loss(student, teacher, 2.0, multi_label=True), 4 * binary.mean(dim=-1))


def test_the_loss_mixes_the_label_loss_and_the_teachers_term_reduced_by_the_same_item_count():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 1])
    settings = Distillation("t", "t", "transformers ResNet", alpha=0.25, temperature=3.0)

    def plain(outputs, labels, num_items_in_batch=None):
        return F.cross_entropy(outputs[0], labels, reduction="sum") / num_items_in_batch

    loss = DistillationLoss(plain, teacher, settings, multi_label=False)((student,), labels, num_items_in_batch=8)
    soft = soft_target_loss(student, teacher, 3.0).sum() / 8
    assert torch.allclose(loss, 0.75 * plain((student,), labels, 8) + 0.25 * soft)


def test_distill_trains_a_run_folder_that_records_the_teacher_and_evaluates_like_any_run(
    shapes, tmp_path, capfd, caplog
):
    output = tmp_path / "student-run"
    argv = ["distill", "--teacher", str(shapes["teacher"]), "--model_name_or_path", str(shapes["student"])]
    argv += ["--train_dir", str(shapes["train"]), "--validation_dir", str(shapes["validation"])]
    argv += ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--image_cache", "off"]
    argv += ["--distill_alpha", "0.7", "--distill_temperature", "2", "--output_dir", str(output)]
    assert cli(argv) == 0, capfd.readouterr().err[-3000:]
    started = next(record.message for record in caplog.records if record.message.startswith("hf_resnet run:"))
    assert (
        "teacher: local checkpoint teacher (transformers ResNet), loss (1 - 0.7) x labels + 0.7 x T^2 x soft "
        "targets at T = 2; it sees the student's batch resized to 40x40"
    ) in started.splitlines()
    recipe = json.loads((output / "recipe.json").read_text())
    assert recipe["recipe"]["distillation"] == {
        "teacher": "local checkpoint teacher",
        "teacher_base_model": None,  # a plain checkpoint, not an hf_resnet run: its base is not known
        "teacher_family": "transformers ResNet",
        "alpha": 0.7,
        "temperature": 2.0,
        "teacher_inputs": "the student's batch resized to 40x40",
    }
    # A local teacher is not recorded in the portable flags: a rerun names its own, as for a local base model.
    assert recipe["model"]["teacher"] is None and "teacher" in recipe["paths"]["not_recorded"]
    card = (output / "README.md").read_text()
    assert "- Weights: fine-tuned from local checkpoint student" in card
    assert "- Distilled from the teacher local checkpoint teacher (transformers ResNet)" in card
    assert "--teacher YOUR_TEACHER" in card
    assert cli(["evaluate", "--model", str(output), "--test_dir", str(shapes["validation"])]) == 0
    assert json.loads((output / "test_results.json").read_text())["test_accuracy"] >= 0


def test_the_teacher_reaches_the_students_weights_only_through_its_weight_in_the_loss(shapes, tmp_path):
    common = dict(
        model_name_or_path=str(shapes["student"]),
        train_dir=str(shapes["train"]),
        validation_dir=str(shapes["validation"]),
        max_steps=2,
        per_device_train_batch_size=8,
        seed=0,
        **QUIET,
    )
    weights = {}
    for name, run in (
        ("plain", lambda out: hf_resnet.finetune(output_dir=out, **common)),
        (
            "alpha 0",
            lambda out: hf_resnet.distill(str(shapes["teacher"]), distill_alpha=0.0, output_dir=out, **common),
        ),
        (
            "alpha 1",
            lambda out: hf_resnet.distill(str(shapes["teacher"]), distill_alpha=1.0, output_dir=out, **common),
        ),
    ):
        run(str(tmp_path / name))
        weights[name] = load_file(tmp_path / name / "model.safetensors")
    head = "classifier.1.weight"
    assert torch.equal(weights["plain"][head], weights["alpha 0"][head])  # the teacher's term weighed nothing
    assert not torch.allclose(weights["plain"][head], weights["alpha 1"][head])


def test_a_multi_label_student_learns_from_a_multi_label_teacher(tmp_path):
    teacher = save_tiny_checkpoint(
        tmp_path / "teacher", problem_type="multi_label_classification", **_labelled(MULTI_SHAPES)
    )
    result = hf_resnet.distill(
        teacher=str(teacher),
        model_name_or_path=str(save_tiny_checkpoint(tmp_path / "student", seed=1)),
        train_dir=str(make_multi_label_folder(tmp_path / "train", count=16, seed=1)),
        validation_dir=str(make_multi_label_folder(tmp_path / "validation", count=8, seed=2)),
        max_steps=2,
        per_device_train_batch_size=8,
        output_dir=str(tmp_path / "run"),
        **QUIET,
    )
    assert "eval_map" in result.metrics
    recorded = json.loads((tmp_path / "run" / "recipe.json").read_text())["recipe"]["distillation"]
    assert recorded["alpha"] == 0.5 and recorded["temperature"] == 4.0  # the defaults, as the flags say
    assert recorded["teacher_inputs"] == "the student's batch as is"


def test_a_teacher_that_cannot_teach_this_run_is_one_line_naming_teacher(shapes, tmp_path, capfd):
    data = ["--train_dir", str(shapes["train"]), "--model_name_or_path", str(shapes["student"])]
    run = [*data, "--output_dir", str(tmp_path / "out"), "--image_cache", "off"]
    stranger = refused_line(["distill", "--teacher", str(shapes["stranger"]), *run], capfd)
    assert stranger.startswith(
        f"hf-resnet distill: error: --teacher {shapes['stranger']}: was trained on other classes"
    )
    multi = save_tiny_checkpoint(tmp_path / "multi", problem_type="multi_label_classification", **_labelled(SHAPES))
    kind = refused_line(["distill", "--teacher", str(multi), *run], capfd)
    assert kind.startswith(f"hf-resnet distill: error: --teacher {multi}: is a multi-label classifier, but this run")
    missing = refused_line(["distill", "--teacher", str(tmp_path / "nowhere"), *run], capfd)
    assert missing.startswith(f"hf-resnet distill: error: --teacher {tmp_path / 'nowhere'}: no such folder")
    assert not (tmp_path / "out").exists()


def test_distillation_flags_without_a_teacher_are_refused_not_ignored(shapes, tmp_path, capfd):
    run = ["--train_dir", str(shapes["train"]), "--arch", "resnet-18", "--output_dir", str(tmp_path / "out")]
    assert refused_line(["train", "--distill_alpha", "0.3", *run], capfd) == (
        "hf-resnet train: error: --distill_alpha 0.3: sets how a teacher is learnt from: pass --teacher too "
        "(or drop it)"
    )
    assert refused_line(["distill", *run], capfd).startswith("hf-resnet distill: error: --teacher not given:")
    assert refused_line(["distill", "--teacher", "t", "--distill_alpha", "1.5", *run], capfd) == (
        "hf-resnet distill: error: --distill_alpha 1.5: must be in [0, 1]"
    )
    with pytest.raises(ArgumentError, match="^--teacher not given"):
        hf_resnet.distill(teacher=None, arch="resnet-18", output_dir=str(tmp_path / "out"))


def test_a_distilled_run_resumes_with_its_teacher_and_refuses_another_mix(shapes, tmp_path):
    run = dict(
        teacher=str(shapes["teacher"]),
        model_name_or_path=str(shapes["student"]),
        train_dir=str(shapes["train"]),
        validation_dir=str(shapes["validation"]),
        per_device_train_batch_size=8,
        output_dir=str(tmp_path / "run"),
        **{**QUIET, "save_strategy": "steps"},
        save_steps=1,
        eval_strategy="no",
    )
    hf_resnet.distill(max_steps=1, **run)
    with pytest.raises(ArgumentError, match="distill_alpha None there, 0.9 here"):
        hf_resnet.distill(max_steps=2, resume_from_checkpoint="last", distill_alpha=0.9, **run)
    resumed = hf_resnet.distill(max_steps=2, resume_from_checkpoint="last", **run)
    assert json.loads((resumed.output_dir / "trainer_state.json").read_text())["global_step"] == 2
