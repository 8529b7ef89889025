# The Python examples (bindings/python on the shared library). Included by the top Makefile.
#   make test-python-examples   run examples/python/*.py quickly on a Fashion-MNIST subset:
#                               a numpy MLP sparsified by C-GaP at 90%, the engine's mlp trained
#                               from Python, and P-GaP run by the host over 3 processes
#                               exchanging partitions via files (they demonstrate; the checks of
#                               the same calls are in bindings/python/tests, make test-python)
#   make wheel                  the platform wheel dist/wheels/coppice-*.whl: the package with
#                               libcoppice and the libraries it needs (OpenBLAS, libgfortran,
#                               libquadmath, libomp, zlib) bundled, built by `pip wheel
#                               ./bindings/python` (bindings/python/build_support/coppice_wheel.py)
#   make install-python         pip-install that wheel into $(PYTHON)'s environment
#   make test-python-wheel      build the wheel (nothing written into bindings/python), check its
#                               tag and contents, install it into a fresh virtualenv and train a
#                               small model with no environment variables set and the system's
#                               OpenBLAS/libgfortran/libquadmath/libomp hidden (unshare -m)
#                               (Tests/wheel/test-wheel.sh)
# (`make test-python`, the pytest suite, is in the top Makefile.)

PYTHON_ENV := COPPICE_LIBRARY=$(CURDIR)/$(DIST)/lib/libcoppice.so.$(SOVERSION) \
              PYTHONPATH=$(CURDIR)/bindings/python
PYTHON_MLP_ARGS    ?= --limit 2000 --epochs 1
PYTHON_ENGINE_ARGS ?= --model mlp --method cgap --limit 2000 --test-limit 1000 --epochs 1
PYTHON_PGAP_ARGS   ?= --limit 2000 --test-limit 1000 --rounds 2 --finetune-epochs 1

.PHONY: test-python-examples test-python-wheel install-python wheel

test-python-examples: lib
	$(PYTHON_ENV) $(PYTHON) examples/python/sparsify_numpy_mlp.py $(PYTHON_MLP_ARGS)
	$(PYTHON_ENV) $(PYTHON) examples/python/sparsify_numpy_mlp.py $(PYTHON_MLP_ARGS) --dense
	$(PYTHON_ENV) $(PYTHON) examples/python/train_engine.py $(PYTHON_ENGINE_ARGS)
	$(PYTHON_ENV) $(PYTHON) examples/python/pgap_host.py $(PYTHON_PGAP_ARGS)
	@echo "test-python-examples: passed"

WHEEL_DIR := $(DIST)/wheels

# The wheel takes the library from dist/lib; `pip wheel` replaces an older wheel of the same name.
wheel: lib
	@mkdir -p $(WHEEL_DIR)
	$(PYTHON) -m pip wheel --no-deps --no-cache-dir -q -w $(WHEEL_DIR) ./bindings/python
	@ls -l $(WHEEL_DIR)/coppice-*.whl

# Installs the wheel into $(PYTHON)'s environment (no COPPICE_LIBRARY or system install needed
# afterwards). PIP_ARGS e.g. --user.
install-python: wheel
	$(PYTHON) -m pip install --force-reinstall --no-deps $(PIP_ARGS) \
	  $$(ls -t $(WHEEL_DIR)/coppice-$(VERSION)-*.whl | head -1)

test-python-wheel: lib
	bash Tests/wheel/test-wheel.sh $(PYTHON)

TEST_EXTRA += test-python-examples test-python-wheel
