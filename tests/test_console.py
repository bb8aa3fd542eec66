"""What a run writes to the terminal: the plan, the progress bar, one line per evaluation and the result.

A local checkpoint's run is counted in tests/test_recipe.py (the recipe's own launch); a Hub
checkpoint's here, against the local Hub.
"""

from __future__ import annotations

import io
import logging

from conftest import assert_quiet, console_lines, make_image_folder, save_tiny_checkpoint, train
from test_hub import TOKEN, hub, subprocess_env  # noqa: F401

from hf_resnet.runtime.console import quiet_libraries


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


def test_verbose_lets_the_libraries_chatter_through_and_quiet_keeps_their_warnings(tmp_path):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log_file = logging.FileHandler(tmp_path / "run.log")  # a file keeps everything
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    transformers_logger.addHandler(log_file)
    try:
        for verbose in (False, True):
            quiet_libraries(verbose=verbose)
            logging.getLogger("transformers.modeling_utils").warning("ResNetForImageClassification LOAD REPORT")
            logging.getLogger("transformers.trainer").warning("Something hf_resnet does not say")
        quiet, verbose = stream.getvalue().splitlines()[:1], stream.getvalue().splitlines()[1:]
        assert quiet == ["Something hf_resnet does not say"]
        assert verbose == ["ResNetForImageClassification LOAD REPORT", "Something hf_resnet does not say"]
        log_file.flush()
        assert (tmp_path / "run.log").read_text().count("LOAD REPORT") == 2
    finally:
        quiet_libraries(verbose=False)
        transformers_logger.removeHandler(handler)
        transformers_logger.removeHandler(log_file)
        log_file.close()
