# Coppice — build, test, demo, benchmarks, install.
#   make demo    the main job: a short training on Fashion-MNIST with progress and a table
#   make test    every test (Swift, kernels, C ABI, examples, Python)
#   make bench   benchmarks (not part of the tests)
# Missing system and Python packages are installed first (scripts/install-deps.sh).

SHELL    := /bin/bash
SWIFT    ?= swift
PYTHON   ?= python3
CC       ?= cc
CXX      ?= c++
PREFIX   ?= /usr/local
VERSION  := 0.1.0
SOVERSION := 0

RELEASE  := .build/release
LIBBUILD := .build-lib/release
DIST     := dist
LIBFILE  := $(DIST)/lib/libcoppice.so.$(VERSION)
COPPICE  := $(RELEASE)/coppice
STAMP    := .build/.deps-installed

# libomp's paths, found after the dependencies are installed (recursive: evaluated when a recipe
# runs) and handed to Package.swift. Besides saving it the search, this puts them in SwiftPM's
# manifest-cache key: without it, a manifest evaluated once before libomp-dev was installed
# stays cached (per user, across clones) and every later build silently lacks OpenMP.
OMP_PATHS = $(shell bash scripts/openmp-paths.sh 2>/dev/null)
SWIFTPM  = $(if $(OMP_PATHS),COPPICE_OMP_INCLUDE=$(word 1,$(OMP_PATHS)) \
           COPPICE_OMP_LIB=$(word 2,$(OMP_PATHS))) $(SWIFT)

.PHONY: all deps build lib demo test test-swift test-kernels test-abi test-python bench \
        install format clean check-sanitize

all: build lib

$(STAMP): scripts/install-deps.sh
	@bash scripts/install-deps.sh
	@mkdir -p .build && touch $(STAMP)

deps:
	@bash scripts/install-deps.sh

build: $(STAMP)
	$(SWIFTPM) build -c release --product coppice

# The shared library: Swift runtime linked statically, only coppice_* exported, SONAME set.
lib: $(STAMP)
	$(SWIFTPM) build -c release --scratch-path .build-lib --product CoppiceShared \
	  -Xswiftc -static-stdlib -Xswiftc -use-ld=lld \
	  -Xlinker --version-script=$(CURDIR)/scripts/coppice.map \
	  -Xlinker -soname=libcoppice.so.$(SOVERSION)
	@mkdir -p $(DIST)/lib
	strip --strip-unneeded -o $(LIBFILE).tmp $(LIBBUILD)/libCoppiceShared.so
	@# Replace by rename, never in place: running programs keep the old file.
	@if cmp -s $(LIBFILE).tmp $(LIBFILE); then rm $(LIBFILE).tmp; else mv $(LIBFILE).tmp $(LIBFILE); fi
	ln -sf libcoppice.so.$(VERSION) $(DIST)/lib/libcoppice.so.$(SOVERSION)
	ln -sf libcoppice.so.$(SOVERSION) $(DIST)/lib/libcoppice.so

# The main job: C-GaP at 90% sparsity on the cnn, 4 partitions, one round of 1-epoch steps and
# one fine-tune epoch, on the full Fashion-MNIST; prints progress, a per-epoch table (accuracy,
# sparsity, time vs a dense epoch measured in the same run) and the per-layer sparsity.
demo: build
	@mkdir -p runs
	$(COPPICE) train --model cnn --method cgap --sparsity 0.9 --partitions 4 --step-epochs 1 \
	  --rounds 1 --epochs 5 --json runs/demo.json

test: test-swift test-swift-example test-kernels check-sanitize test-abi test-python test-extra
	@echo "make test: all suites passed"

test-swift: $(STAMP)
	$(SWIFTPM) test 2>&1 | tee .build/swift-test.log | grep -E "error|failed|Executed|passed after|skipped" ; \
	  exit $${PIPESTATUS[0]}

test-swift-example: $(STAMP)
	$(SWIFTPM) build --product coppice-swift-example
	.build/debug/coppice-swift-example 2000

test-kernels: $(STAMP)
	$(MAKE) -C Tests/kernels test

# The C ABI: exports = the header's functions; Tests/abi/test_c_api.c built as C99 and as C++17
# (the header must compile as both) and run (needs the Fashion-MNIST package for its engine part).
test-abi: lib
	bash Tests/abi/check-exports.sh $(LIBFILE) include/coppice.h
	@mkdir -p .build/abi
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -O2 -Iinclude Tests/abi/test_c_api.c \
	  -L$(DIST)/lib -lcoppice -Wl,-rpath,$(CURDIR)/$(DIST)/lib -lm -o .build/abi/test_c_api
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -O2 -x c++ -Iinclude Tests/abi/test_c_api.c \
	  -L$(DIST)/lib -lcoppice -Wl,-rpath,$(CURDIR)/$(DIST)/lib -lm -o .build/abi/test_c_api-cxx
	.build/abi/test_c_api
	.build/abi/test_c_api-cxx

test-python: lib build
	cd bindings/python && COPPICE_REQUIRE_TORCH=1 COPPICE_LIBRARY=$(CURDIR)/$(DIST)/lib/libcoppice.so.$(SOVERSION) \
	  PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q tests

bench: build
	@mkdir -p runs
	$(COPPICE) bench kernels --json runs/bench-kernels.json
	$(PYTHON) scripts/check-kernel-bars.py runs/bench-kernels.json
	$(COPPICE) bench train --model cnn --sparsity 0,0.8,0.9,0.95 --profile --json runs/bench-train-cnn.json
	$(COPPICE) bench train --model resnet20 --sparsity 0,0.8,0.9,0.95 --profile \
	  --json runs/bench-train-resnet20.json
	@if $(PYTHON) -c "import torch" 2> /dev/null; then \
	  $(PYTHON) scripts/bench-vs-torch.py --coppice $(COPPICE) --sparsity 0,0.8,0.9,0.95 \
	    --json runs/bench-vs-torch.json; fi
	$(COPPICE) bench layers --json runs/bench-layers.json
	@if command -v mpirun > /dev/null; then \
	  bash scripts/bench-distributed.sh $(COPPICE) runs/bench-distributed.md; fi

# The sparse-kernel tests under AddressSanitizer and UndefinedBehaviorSanitizer.
check-sanitize:
	$(MAKE) -C Tests/kernels check-sanitize

# Installs an existing build of dist/lib (never builds: `make lib` first; `make lib install`
# does both) into $(DESTDIR)$(PREFIX): the library and its links, coppice.h and coppice.hpp, the
# pkg-config file and the CMake package (lib/cmake/coppice: find_package(coppice CONFIG), target
# coppice::coppice). Both find the prefix relative to their own location, so a DESTDIR staging
# tree or a moved prefix works as installed.
INSTALL_DIR := $(DESTDIR)$(PREFIX)
CMAKE_DIR   := $(INSTALL_DIR)/lib/cmake/coppice
SUBST       := sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SOVERSION@|$(SOVERSION)|g'

install:
	@if [ ! -f $(LIBFILE) ]; then \
	  echo "make install: $(LIBFILE) is not built; run \`make lib\` first (or \`make lib install\`)" >&2; \
	  exit 1; fi
	install -d $(INSTALL_DIR)/lib $(INSTALL_DIR)/include $(INSTALL_DIR)/lib/pkgconfig $(CMAKE_DIR)
	install -m 755 $(LIBFILE) $(INSTALL_DIR)/lib/
	ln -sf libcoppice.so.$(VERSION) $(INSTALL_DIR)/lib/libcoppice.so.$(SOVERSION)
	ln -sf libcoppice.so.$(SOVERSION) $(INSTALL_DIR)/lib/libcoppice.so
	install -m 644 include/coppice.h bindings/cpp/coppice.hpp $(INSTALL_DIR)/include/
	$(SUBST) scripts/coppice.pc.in > $(INSTALL_DIR)/lib/pkgconfig/coppice.pc
	$(SUBST) scripts/cmake/coppice-config.cmake.in > $(CMAKE_DIR)/coppice-config.cmake
	$(SUBST) scripts/cmake/coppice-config-version.cmake.in > $(CMAKE_DIR)/coppice-config-version.cmake

# Example and binding test targets live in mk/*.mk (each adds itself to TEST_EXTRA).
TEST_EXTRA :=
-include mk/*.mk

test-extra: $(TEST_EXTRA)

format:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

clean:
	rm -rf .build .build-lib $(DIST)
