# The Python examples (bindings/python on the shared library). Included by the top Makefile.
#   make test-python-examples   run examples/python/*.py quickly on a Fashion-MNIST subset:
#                               a numpy MLP sparsified by C-GaP at 90%, the engine's mlp trained
#                               from Python, and P-GaP run by the host over 3 processes
#                               exchanging partitions via files (they demonstrate; the checks of
#                               the same calls are in bindings/python/tests, make test-python)
#   make install-python         pip-install the package with its own copy of the library
#   make test-python-install    pip-install bindings/python into a temporary virtualenv and
#                               import it (library via COPPICE_LIBRARY, then the bundled copy)
# (`make test-python`, the pytest suite, is in the top Makefile.)

PYTHON_ENV := COPPICE_LIBRARY=$(CURDIR)/$(DIST)/lib/libcoppice.so.$(SOVERSION) \
              PYTHONPATH=$(CURDIR)/bindings/python
PYTHON_MLP_ARGS    ?= --limit 2000 --epochs 1
PYTHON_ENGINE_ARGS ?= --model mlp --method cgap --limit 2000 --test-limit 1000 --epochs 1
PYTHON_PGAP_ARGS   ?= --limit 2000 --test-limit 1000 --rounds 2 --finetune-epochs 1

.PHONY: test-python-examples test-python-install install-python

test-python-examples: lib
	$(PYTHON_ENV) $(PYTHON) examples/python/sparsify_numpy_mlp.py $(PYTHON_MLP_ARGS)
	$(PYTHON_ENV) $(PYTHON) examples/python/sparsify_numpy_mlp.py $(PYTHON_MLP_ARGS) --dense
	$(PYTHON_ENV) $(PYTHON) examples/python/train_engine.py $(PYTHON_ENGINE_ARGS)
	$(PYTHON_ENV) $(PYTHON) examples/python/pgap_host.py $(PYTHON_PGAP_ARGS)
	@echo "test-python-examples: passed"

# Installs the package into $(PYTHON)'s environment with its own copy of the library (so that
# it needs neither COPPICE_LIBRARY nor a system install). PIP_ARGS e.g. --user.
install-python: lib
	@set -e; staging=$$(mktemp -d); trap 'rm -rf "$$staging"' EXIT; \
	cp -r bindings/python "$$staging/python"; rm -rf "$$staging/python/tests"; \
	cp -L $(DIST)/lib/libcoppice.so.$(SOVERSION) "$$staging/python/coppice/"; \
	$(PYTHON) -m pip install $(PIP_ARGS) "$$staging/python"

# Not part of `make test` (pip fetches setuptools to build): `pip install` of a copy of
# bindings/python (so that no build/ is left in the tree) into a temporary virtualenv, then an
# import from elsewhere, once finding the library through COPPICE_LIBRARY and once through the
# package's own copy (install-python's way).
test-python-install: lib
	@set -e; venv=$$(mktemp -d); trap 'rm -rf "$$venv"' EXIT; \
	$(PYTHON) -m venv --system-site-packages "$$venv"; \
	cp -r bindings/python "$$venv/src"; rm -rf "$$venv/src/tests"; \
	"$$venv/bin/pip" install --no-deps -q "$$venv/src"; \
	cd "$$venv" && COPPICE_LIBRARY=$(CURDIR)/$(DIST)/lib/libcoppice.so.$(SOVERSION) \
	  "$$venv/bin/python" -c "import coppice; print('pip install ./bindings/python:', \
	    coppice.__file__, 'library', coppice.version(), 'from', coppice.library_path)"; \
	cd $(CURDIR) && $(MAKE) --no-print-directory -o lib install-python PYTHON="$$venv/bin/python" \
	  PIP_ARGS="--no-deps -q --force-reinstall"; \
	cd "$$venv" && env -u COPPICE_LIBRARY "$$venv/bin/python" -c "import coppice, os; \
	  assert coppice.library_path.startswith(os.path.dirname(coppice.__file__)), coppice.library_path; \
	  print('install-python: library', coppice.version(), 'from', coppice.library_path)"
	@echo "test-python-install: passed"

TEST_EXTRA += test-python-examples
