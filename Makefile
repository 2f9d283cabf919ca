# The two commands a newcomer needs: `make study` (the whole study, default profile, reports in
# reports/) and `make test`. Both create the virtual environment .venv on first use.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= default
STAMP   := $(VENV)/.serlib-installed

# Data: $SERLIB_DATA wins; else the development/CI copies beside the checkout; else data/.
SHARED := $(abspath $(CURDIR)/../shared)
ifeq ($(origin SERLIB_DATA), undefined)
  ifneq ($(wildcard $(SHARED)/corpora),)
    export SERLIB_DATA := $(SHARED)/corpora
  endif
endif
ifeq ($(origin SERLIB_SPLITS), undefined)
  ifneq ($(wildcard $(SHARED)/splits),)
    export SERLIB_SPLITS := $(SHARED)/splits
  endif
endif

.PHONY: study smoke test bench gpu-check lab screenshots venv clean-reports

# GPUS=N (N > 1): the study in N processes on one machine, one GPU each (torchrun; see serlib/study/runner.py).
GPUS ?= 1
ifeq ($(GPUS),1)
  SERLIB_STUDY := $(VENV)/bin/serlib study
else
  SERLIB_STUDY := $(VENV)/bin/torchrun --standalone --nproc-per-node $(GPUS) -m serlib.cli study
endif

# FETCH=1: first download the free corpora into the data root (serlib fetch; corpora already there are kept).
study: $(STAMP)
ifeq ($(FETCH),1)
	$(VENV)/bin/serlib fetch ravdess emodb urdu
endif
	$(SERLIB_STUDY) --profile $(PROFILE)

smoke: $(STAMP)
	$(VENV)/bin/serlib study --profile smoke

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/serlib bench

# The one command to run on a GPU machine: params/gpu_check.yaml, then utt/s, peak GPU memory, UA, wall time.
gpu-check: $(STAMP)
	$(VENV)/bin/serlib gpu-check

# PNG screenshots of reports/*.html in headless Chromium (reports/screenshots/), to look at the pages.
screenshots: $(STAMP)
	$(PY) -m serlib.study.screenshots

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

venv: $(STAMP)

# torch==2.13.0 first: an unpinned torch would pull gigabytes of CUDA packages on a CPU machine.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean-reports:
	rm -rf reports/*.html reports/*.ipynb reports/results.csv reports/run.json reports/failed
