# Each target creates .venv and installs what it needs, so a fresh clone needs nothing else.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test style quality help-text clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,export,demo,openvino]"
	touch $(STAMP)

# The launcher's "values were not passed" notice is left out: hf_resnet decides the precision and threads the
# launcher was not told, and its start-up summary says which and why.
demo: $(STAMP)  ## Fine-tune on the embedded default (offline digits, resnet-18 layout)
	ACCELERATE_LOG_LEVEL=error $(BIN)/accelerate launch -q --num_processes 1 --num_machines 1 --dynamo_backend no \
		recipes/finetune.py --overwrite_output_dir  # a rerun replaces the previous demo run

# Passive OpenMP waits: spinning threads of one test process would starve the others' on 2 shared cores.
test: $(STAMP)  ## The test suite (CPU, a few minutes)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

style: $(STAMP)
	$(BIN)/ruff format hf_resnet recipes tests benchmarks
	$(BIN)/ruff check --fix hf_resnet recipes tests benchmarks

quality: $(STAMP)
	$(BIN)/ruff format --check hf_resnet recipes tests benchmarks
	$(BIN)/ruff check hf_resnet recipes tests benchmarks

# `hf-resnet train --help` and `--help-all` print copies rendered here (so they need not import torch), and the
# command line is checked against the flag table rendered beside them; tests keep all three current.
help-text: $(STAMP)
	$(BIN)/python -c "from hf_resnet.config.parsing import render_help; print(render_help(), end='')" \
		> hf_resnet/config/train_help.txt.new
	$(BIN)/python -c "from hf_resnet.config.parsing import render_help_all; print(render_help_all(), end='')" \
		> hf_resnet/config/train_help_all.txt.new
	mv hf_resnet/config/train_help.txt.new hf_resnet/config/train_help.txt
	mv hf_resnet/config/train_help_all.txt.new hf_resnet/config/train_help_all.txt
	$(BIN)/python -c "from hf_resnet.config.parsing import render_flags; print(render_flags(), end='')" \
		> hf_resnet/config/train_flags.json.new
	mv hf_resnet/config/train_flags.json.new hf_resnet/config/train_flags.json

clean:
	rm -rf $(VENV) outputs .pytest_cache
