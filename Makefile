# Set-up and entry points. `make demo` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO   ?= demo
# the demo runs on pseudo-participants the demo model never saw in training (it was trained on 01-20)
DEMO_FIRST ?= 21
DEMO_N     ?= 2
# CPU build of PyTorch first, so no requirement can pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint bids-validator chromium clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[demo,test]'
	# compile the geometry kernels once now (numba cache), so that no first run pays ~25 s for it
	$(PY) -m cor2vox_bids.geometry.warmup
	touch $@

install: $(VENV)/.installed

.tools/node_modules/.bin/bids-validator:
	@if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix .tools bids-validator@1.15.0; \
	else echo "npm not found: bids-validator tests will be skipped"; fi

bids-validator: .tools/node_modules/.bin/bids-validator

# headless Chromium renders the HTML reports in tests/reports (skipped with a reason where it is missing)
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: browser report tests will be skipped"; \
	else echo "chromium not found (Debian: apt-get install chromium): browser report tests will be skipped"; fi

# demo data are reused while the arguments and the generator (cor2vox_bids/demodata.py) are unchanged; the stamp
# is written only after a complete build
DEMO_DATA_ARGS = --participants $(DEMO_N) --first $(DEMO_FIRST) --no-site2
DEMO_DATA_STAMP = $(DEMO)/data/.cor2vox-demo-data

demo: install
	@want="$(DEMO_DATA_ARGS) $$(sha256sum cor2vox_bids/demodata.py | cut -c1-16)"; \
	if [ -f "$(DEMO_DATA_STAMP)" ] && [ "$$(cat "$(DEMO_DATA_STAMP)")" = "$$want" ]; then \
	  echo "demo data: reusing $(DEMO)/data ($(DEMO_DATA_ARGS))"; \
	else rm -rf $(DEMO)/data && $(VENV)/bin/cor2vox-demo-data $(DEMO)/data $(DEMO_DATA_ARGS) \
	  && echo "$$want" > "$(DEMO_DATA_STAMP)"; fi
	$(VENV)/bin/cor2vox-bids $(DEMO)/data/bids $(DEMO)/out participant -w $(DEMO)/work --nprocs 2
	$(VENV)/bin/cor2vox-bids $(DEMO)/data/bids $(DEMO)/out group
	@echo "Reports:" $$(ls $(DEMO)/out/sub-*.html) "and $(DEMO)/out/group_desc-qc_report.html"

test: install bids-validator chromium
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" $(PY) -m pytest -q -m "not docker and not slurm" tests
	$(VENV)/bin/ruff check .

# ruff (lint + format), one config in pyproject.toml. `ruff format --check .` joins `make test` once the whole tree
# has been formatted (it is not yet).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-demo:
	rm -rf $(DEMO)
