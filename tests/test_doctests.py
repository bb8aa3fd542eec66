"""The examples in hf_resnet's docstrings run as written and print what they show.

An example that is never run rots silently; here every one runs, in a scratch folder, and none may be
skipped (an example that needs a trained model, the Hub or a GPU belongs in the docs, not behind `>>>`).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hf_resnet

#: `__main__` runs the CLI when imported.
NOT_IMPORTED = ("hf_resnet.__main__",)
MODULES = ["hf_resnet"] + sorted(
    info.name for info in pkgutil.walk_packages(hf_resnet.__path__, "hf_resnet.") if info.name not in NOT_IMPORTED
)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_every_module_of_the_package_is_collected():
    assert {"hf_resnet.inference.classifier", "hf_resnet.model.tta", "hf_resnet.scoring.metrics"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_each_module_run_and_print_what_they_show(name, tmp_path, monkeypatch, capsys):
    module = importlib.import_module(name)
    monkeypatch.chdir(tmp_path)  # an example that names a file finds none of the checkout's
    tests = doctest.DocTestFinder().find(module, name)
    skipped = [test.name for test in tests for example in test.examples if example.options.get(doctest.SKIP)]
    assert not skipped, f"examples that never run: {skipped}"
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for test in tests:
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, capsys.readouterr().out
