"""`hf-resnet demo` in a real browser, the Space that `hf-resnet push --space` makes, and the examples they show.

The browser is Debian's headless Chromium driven through its chromedriver (`.ci/run` installs both), so
the page is tested as a visitor sees it: upload, click, read the label. Screenshots land in
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint, shape_image, tiny_config
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image
from test_card import make_run_folder, read_card
from test_hub import TOKEN, hub, run_command, subprocess_env  # noqa: F401 - `hub` is a fixture

import hf_resnet
from hf_resnet.data.examples import EXAMPLE_MARKER, EXAMPLE_MAX_SIDE, keep_examples
from hf_resnet.hub.push import PushError, push
from hf_resnet.inference.classifier import load_classifier
from hf_resnet.inference.demo import ModelFacts, predict, read_facts

ARTIFACTS = ROOT / "tests" / "artifacts"
#: Chromium flags for a closed network and a root user in a container; each run gets a fresh profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny run trained to the end, as `hf-resnet train` leaves it (examples included)."""
    tmp = tmp_path_factory.mktemp("demo-run")
    train = make_image_folder(tmp / "data" / "train", per_class=6, seed=1)
    val = make_image_folder(tmp / "data" / "val", per_class=3, seed=2)
    result = hf_resnet.finetune(
        config=tiny_config(),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp / "run"),
        image_size=32,
        num_train_epochs=2,
        per_device_train_batch_size=6,
        report_to="none",
    )
    return Path(result.output_dir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(command: list[str], port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start a demo process and wait until it answers on `port` (or fail with its output)."""
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"{command} exited with {process.returncode}:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    log.seek(0)
    pytest.fail(f"{command} did not serve on port {port}:\n{log.read()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def chromium():
    """A headless Chromium under Selenium, through the system chromedriver (no browser download)."""
    names = ("chromium", "chromium-browser", "google-chrome")  # Debian's, Ubuntu's, GitHub runners'
    browser = next((shutil.which(name) for name in names if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        message = "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        if os.environ.get("HF_RESNET_REQUIRE_BROWSER") == "1":  # set by .ci/run: there the browser test must run
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    return webdriver.Chrome(service=Service(driver), options=options)


def classify_on_page(browser, url: str, image: Path | None = None, example: str | None = None):
    """On a freshly loaded demo page, upload `image` (or click the example named `example`), press Classify,
    and read what the page shows: (top label, {label: score})."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "input[type=file]"))
    if image is not None:
        browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(image))
    else:
        browser.find_element(By.XPATH, f"//button[normalize-space()={example!r}]").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=image] img"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Classify']").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#prediction meter"))
    top = browser.find_element(By.CSS_SELECTOR, "#prediction [data-testid=label-output-value]").text
    bars = browser.find_elements(By.CSS_SELECTOR, "#prediction meter")
    return top, {bar.get_attribute("aria-label"): float(bar.get_attribute("value")) for bar in bars}


# ----------------------------------------------------------------------------- examples kept at training time


def test_training_keeps_one_small_validation_image_per_class(finished_run: Path):
    examples = sorted(p.name for p in (finished_run / "examples").iterdir())
    assert examples == ["000_circle.jpg", "001_hbar.jpg", "002_vbar.jpg"]
    for name in examples:
        with Image.open(finished_run / "examples" / name) as image:
            assert image.mode == "RGB" and max(image.size) <= EXAMPLE_MAX_SIDE


def test_examples_are_the_first_of_each_class_shrunk_and_replace_earlier_ones(tmp_path: Path):
    rng = np.random.default_rng(0)
    pictures = [
        Image.new("RGB", (900, 600), "red"),
        shape_image(1, rng, size=40),
        Image.new("RGB", (900, 600), "blue"),
    ]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b/c"])})
    split = Dataset.from_dict({"image": pictures, "label": [0, 1, 0]}, features=features)
    (tmp_path / "examples").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "examples" / "000_old.jpg", comment=EXAMPLE_MARKER)  # an earlier run's
    Image.new("RGB", (4, 4)).save(tmp_path / "examples" / "my_cat.jpg")  # the user's own, in the same folder

    written = keep_examples(split, ["a", "b/c"], tmp_path)

    assert [p.name for p in written] == ["000_a.jpg", "001_b_c.jpg"]
    assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == ["000_a.jpg", "001_b_c.jpg", "my_cat.jpg"]
    # Run again over a user's picture that has an example's name: it is kept, and that class gets none.
    Image.new("RGB", (4, 4), "green").save(written[1])
    assert [p.name for p in keep_examples(split, ["a", "b/c"], tmp_path)] == ["000_a.jpg"]
    with Image.open(written[1]) as kept:
        assert kept.size == (4, 4) and "comment" not in kept.info
    assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == ["000_a.jpg", "001_b_c.jpg", "my_cat.jpg"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "examples").write_text("my notes")  # a file where the folder would go: kept too
    assert keep_examples(split, ["a", "b/c"], tmp_path / "other") == []
    assert (tmp_path / "other" / "examples").read_text() == "my notes"
    with Image.open(written[0]) as first:  # the red picture, the first of class 0, shrunk
        assert first.size == (EXAMPLE_MAX_SIDE, round(EXAMPLE_MAX_SIDE * 2 / 3))
        assert first.getpixel((10, 10))[0] > 200


def test_keep_examples_false_keeps_none(tmp_path: Path):
    train = make_image_folder(tmp_path / "train", per_class=3, seed=1)
    result = hf_resnet.finetune(
        config=tiny_config(),
        train_dir=str(train),
        validation_split=0.34,
        keep_examples=False,
        output_dir=str(tmp_path / "run"),
        image_size=32,
        max_steps=1,
        per_device_train_batch_size=6,
        report_to="none",
    )
    assert not (Path(result.output_dir) / "examples").exists()


# ----------------------------------------------------------------------------- the page


def test_demo_in_a_real_browser_shows_the_label_and_scores_classify_gives(finished_run: Path, tmp_path: Path):
    image = tmp_path / "upload.png"
    shape_image(2, np.random.default_rng(11)).save(image)
    expected = hf_resnet.classify(str(image), model=str(finished_run), top_k=None)
    example = finished_run / "examples" / "001_hbar.jpg"
    expected_example = hf_resnet.classify(str(example), model=str(finished_run), top_k=None)
    port = free_port()
    command = [sys.executable, "-m", "hf_resnet", "demo", "--model", str(finished_run), "--server_port", str(port)]
    env = {**os.environ, **GRADIO_ENV, "PYTHONPATH": TEST_PYTHONPATH}
    server = serve(command, port, env, tmp_path)
    browser = None
    try:
        browser = chromium()
        url = f"http://127.0.0.1:{port}/"
        example_top, example_shown = classify_on_page(browser, url, example="hbar")
        top, shown = classify_on_page(browser, url, image=image)
        facts = browser.find_element("id", "facts").text
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "demo.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot of the demo page: {screenshot}")
    finally:
        if browser is not None:
            browser.quit()
        stop(server)

    assert top == expected[0]["label"]
    assert example_top == expected_example[0]["label"]
    assert example_shown == pytest.approx({e["label"]: e["score"] for e in expected_example}, abs=1e-6)
    assert shown == pytest.approx({entry["label"]: entry["score"] for entry in expected}, abs=1e-6)
    accuracy = json.loads((finished_run / "eval_results.json").read_text())["eval_accuracy"]
    assert "3 labels: circle, hbar, vbar" in facts
    assert f"Accuracy: {accuracy:.1%} on 9 validation images" in facts
    assert "trained from scratch" in facts and "calibrated" in facts
    assert screenshot.stat().st_size > 10_000


def test_multi_label_model_shows_every_label_over_its_threshold(tmp_path: Path):
    folder = save_tiny_checkpoint(tmp_path / "multi", num_labels=4, problem_type="multi_label_classification", seed=3)
    classifier = load_classifier(folder)
    image = shape_image(0, np.random.default_rng(1))
    row = classifier.scores(classifier.forward(classifier.preprocess([image])))[
        0
    ]  # every label, over threshold or not
    scores = {classifier.config.id2label[i]: float(score) for i, score in enumerate(row)}
    middle = sorted(scores.values())[1]  # a threshold that keeps some labels and drops others
    facts = read_facts(folder, classifier.config)
    facts.thresholds = [middle] * 4

    shown, overlay = predict(classifier, facts, image, top_k=1)

    assert shown == {label: score for label, score in scores.items() if score >= middle}
    assert len(shown) == 3 and overlay.size == (32, 32)


def test_facts_of_a_folder_without_results_say_what_is_missing(tiny_checkpoint: Path):
    facts = read_facts(tiny_checkpoint, load_classifier(tiny_checkpoint).config)
    assert facts == ModelFacts(
        labels=["class_0", "class_1", "class_2"], base_model="unknown (no recipe.json)", thresholds=[0.5] * 3
    )
    assert "Accuracy" not in facts.markdown() and "uncalibrated" in facts.markdown()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("", "--model {missing}: no such model folder; pass an output folder or a Hub id (user/name)"),
        (
            "import sys; sys.modules['gradio'] = None; ",
            'Gradio is not installed; the demo needs this optional extra: pip install "hf_resnet[demo]"',
        ),
    ],
)
def test_demo_refuses_bad_input_in_one_line_before_any_work(tmp_path: Path, setup: str, message: str):
    missing = tmp_path / "no-such-run"
    code = f"{setup}from hf_resnet.cli import main; raise SystemExit(main(['demo', '--model', {str(missing)!r}]))"
    env = {**os.environ, "PYTHONPATH": TEST_PYTHONPATH}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"hf-resnet demo: {message.format(missing=missing)}"
    assert not missing.exists()


# ----------------------------------------------------------------------------- the Space


def test_push_with_a_space_makes_a_space_whose_app_serves_the_model(hub, tmp_path: Path):  # noqa: F811
    run = make_run_folder(tmp_path / "run")
    (run / "examples").mkdir()
    shape_image(1, np.random.default_rng(5)).save(run / "examples" / "001_class_1.jpg")

    push(run, "user/shapes", space_id="user/shapes-demo")

    space = hub.files("spaces/user/shapes-demo")
    assert set(space) == {".gitattributes", "app.py", "requirements.txt", "README.md"}
    assert hub.repos["spaces/user/shapes-demo"].sdk == "gradio"
    space_card = yaml.safe_load(space["README.md"].decode().split("---")[1])
    assert space_card["sdk"] == "gradio" and space_card["app_file"] == "app.py"
    assert space_card["models"] == ["user/shapes"] and space_card["sdk_version"].count(".") == 2
    requirements = space["requirements.txt"].decode().splitlines()
    assert requirements[0] == f"hf_resnet[demo]=={hf_resnet.__version__}"
    assert all("==" in line for line in requirements)
    metadata, body = read_card(run / "README.md")
    assert hub.files("user/shapes")["README.md"] == (run / "README.md").read_bytes()
    assert "https://huggingface.co/spaces/user/shapes-demo" in body and "hf-resnet demo --model user/shapes" in body
    assert metadata["widget"] == [
        {"src": f"{hub.url}/user/shapes/resolve/main/examples/001_class_1.jpg", "example_title": "class_1"}
    ]

    # The Space's app.py, as the Space runs it: a fresh machine that knows only HF_ENDPOINT and the model id.
    space_dir = tmp_path / "space"
    space_dir.mkdir()
    for name, content in space.items():
        (space_dir / name).write_bytes(content)
    image = tmp_path / "probe.png"
    shape_image(2, np.random.default_rng(9)).save(image)
    port = free_port()
    env = {**subprocess_env(hub, tmp_path / "space-home"), **GRADIO_ENV}
    env |= {"GRADIO_SERVER_PORT": str(port), "PYTHONPATH": TEST_PYTHONPATH}
    server = serve([sys.executable, "app.py"], port, env, space_dir)
    try:
        from gradio_client import Client, handle_file

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        shown, overlay = client.predict(handle_file(str(image)), api_name="/classify")
    finally:
        stop(server)
    expected = hf_resnet.classify(str(image), model=str(run), top_k=None)
    assert shown["label"] == expected[0]["label"]
    assert {c["label"]: c["confidence"] for c in shown["confidences"]} == pytest.approx(
        {e["label"]: e["score"] for e in expected}, abs=1e-6
    )
    assert Path(overlay).is_file()


def test_failed_space_upload_keeps_the_model_and_the_retry_command_finishes_it(hub, tmp_path: Path):  # noqa: F811
    run = make_run_folder(tmp_path / "run", checkpoint=False)
    hub.fail("POST", r"^/api/spaces/user/shapes-demo/commit/main$", status=500)

    with pytest.raises(PushError) as failure:
        push(run, "user/shapes", space_id="user/shapes-demo")

    command = failure.value.retry_command
    assert command == f"hf-resnet push {run} --repo user/shapes --space user/shapes-demo"
    assert "while uploading the Space user/shapes-demo" in str(failure.value)
    assert "model.safetensors" in hub.files("user/shapes")  # the model push was not undone
    assert set(hub.files("spaces/user/shapes-demo")) == {".gitattributes"}

    retried = run_command(command, subprocess_env(hub, tmp_path / "home", TOKEN), tmp_path)
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert {"app.py", "requirements.txt", "README.md"} <= set(hub.files("spaces/user/shapes-demo"))
