VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean fashion-mnist

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,all]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ticketlab demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n auto

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Table 2's MNIST row on real data (not CI; hours on a 2-core CPU): Fashion-MNIST from Debian's dataset-fashion-mnist.
FASHION ?= /usr/share/datasets/fashion-mnist
fashion-mnist: $(STAMP)
	test -d $(FASHION) || (apt-get update && apt-get install -y dataset-fashion-mnist)
	$(VENV)/bin/ticketlab run lenet300-fashion-mnist --set data.root=$(FASHION) --seeds 0 1 2 --runs-dir runs/fashion-mnist
	$(VENV)/bin/ticketlab run lenet5-fashion-mnist --set data.root=$(FASHION) --seeds 0 1 2 --threads 1 --runs-dir runs/fashion-mnist
	$(VENV)/bin/ticketlab table2 --runs-dir runs/fashion-mnist
	$(VENV)/bin/ticketlab report runs/fashion-mnist --out runs/fashion-mnist/report
