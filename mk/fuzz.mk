# Fuzzing the file readers with libFuzzer under AddressSanitizer. Included by the top
# Makefile; deliberately not part of `make test` (it runs for minutes).
#   make fuzz-build   build .build/fuzz/fuzz-safetensors (SafeTensors.decode),
#                     .build/fuzz/fuzz-idx (IDXFile.parse), .build/fuzz/fuzz-csr (the sparse
#                     export loader: SafeTensors.decode then CSRTensors) and
#                     .build/fuzz/fuzz-sparsifier-state (Sparsifier.restore(from:), then a few
#                     steps) with swiftc -sanitize=fuzzer,address, straight from the sources
#                     (no SwiftPM, no C kernels)
#   make fuzz         build, then run each target for FUZZ_SECONDS (default 60) seconds, one
#                     after the other, on a scratch corpus .build/fuzz/corpus-<target> seeded
#                     from fuzz/corpus/<target> (the repo corpus is never written); fails if a
#                     target crashes and prints the path of the crashing input
#                     (.build/fuzz/crashes-<target>/); FUZZ_FLAGS adds libFuzzer flags
#   make fuzz-corpus  regenerate the seed corpus fuzz/corpus with fuzz/make-corpus.py (and the
#                     sparsifier states with FUZZ_WRITE_SEEDS=… fuzz-sparsifier-state)
#   make fuzz-clean   delete .build/fuzz (targets, scratch corpora, crashes, logs)
# Reproduce a crash: SWIFT_BACKTRACE=enable=no .build/fuzz/fuzz-<target> <crash file>; a crash
# input worth keeping goes into fuzz/make-corpus.py, so that the seed corpus stays reproducible.

SWIFTC         ?= swiftc
FUZZ_SECONDS   ?= 60
FUZZ_FLAGS     ?=
FUZZ_DIR       := .build/fuzz
FUZZ_TARGETS   := safetensors idx csr sparsifier-state
FUZZ_SWIFTFLAGS := -sanitize=fuzzer,address -parse-as-library -O -g -use-ld=lld
# Swift's own crash backtracer is turned off (it upsets AddressSanitizer; libFuzzer reports).
# Per-input limits: a few-KB input must never take seconds or allocate hundreds of MB.
FUZZ_LIBFLAGS  := -max_len=4096 -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048 \
                  -print_final_stats=1
# The readers import CoppiceSparsity for CoppiceError only: a one-file module of it is built
# first, so the readers compile as they are.
FUZZ_ERROR_MODULE := $(FUZZ_DIR)/module/CoppiceSparsity.swiftmodule
FUZZ_ERROR_OBJECT := $(FUZZ_DIR)/module/CoppiceError.o
FUZZ_SOURCES_safetensors := fuzz/safetensors/main.swift Sources/CoppiceEngine/Files/SafeTensors.swift
FUZZ_SOURCES_idx := fuzz/idx/main.swift Sources/CoppiceEngine/Data/IDXParser.swift
FUZZ_SOURCES_csr := fuzz/csr/main.swift Sources/CoppiceEngine/Files/SafeTensors.swift \
                    Sources/CoppiceEngine/Files/CSRTensors.swift
# The sparsifier state target is built with the whole (pure Swift) CoppiceSparsity module.
FUZZ_SOURCES_sparsifier-state := fuzz/sparsifier-state/main.swift \
                    $(shell find Sources/CoppiceSparsity -name '*.swift' | sort)

.PHONY: fuzz fuzz-build fuzz-corpus fuzz-clean

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz-%)

$(FUZZ_ERROR_MODULE): Sources/CoppiceSparsity/Support/CoppiceError.swift
	@mkdir -p $(FUZZ_DIR)/module
	$(SWIFTC) -sanitize=address -parse-as-library -O -g -module-name CoppiceSparsity \
	  -package-name Coppice -emit-module -emit-module-path $@ -c $< -o $(FUZZ_ERROR_OBJECT)

$(FUZZ_DIR)/fuzz-safetensors: $(FUZZ_SOURCES_safetensors) $(FUZZ_ERROR_MODULE)
	$(SWIFTC) $(FUZZ_SWIFTFLAGS) -package-name Coppice -I $(FUZZ_DIR)/module \
	  -module-name FuzzSafeTensors $(FUZZ_SOURCES_safetensors) $(FUZZ_ERROR_OBJECT) -o $@

$(FUZZ_DIR)/fuzz-idx: $(FUZZ_SOURCES_idx) $(FUZZ_ERROR_MODULE)
	$(SWIFTC) $(FUZZ_SWIFTFLAGS) -package-name Coppice -I $(FUZZ_DIR)/module \
	  -module-name FuzzIDX $(FUZZ_SOURCES_idx) $(FUZZ_ERROR_OBJECT) -o $@

$(FUZZ_DIR)/fuzz-csr: $(FUZZ_SOURCES_csr) $(FUZZ_ERROR_MODULE)
	$(SWIFTC) $(FUZZ_SWIFTFLAGS) -package-name Coppice -I $(FUZZ_DIR)/module \
	  -module-name FuzzCSR $(FUZZ_SOURCES_csr) $(FUZZ_ERROR_OBJECT) -o $@

$(FUZZ_DIR)/fuzz-sparsifier-state: $(FUZZ_SOURCES_sparsifier-state)
	@mkdir -p $(FUZZ_DIR)
	$(SWIFTC) $(FUZZ_SWIFTFLAGS) -package-name Coppice \
	  -module-name FuzzSparsifierState $(FUZZ_SOURCES_sparsifier-state) -o $@

fuzz: fuzz-build
	@set -u; failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  corpus=$(FUZZ_DIR)/corpus-$$t; crashes=$(FUZZ_DIR)/crashes-$$t; log=$(FUZZ_DIR)/fuzz-$$t.log; \
	  mkdir -p $$corpus $$crashes; cp fuzz/corpus/$$t/* $$corpus/; \
	  dict=""; case $$t in safetensors|csr) dict="-dict=fuzz/safetensors.dict";; esac; \
	  echo "fuzz-$$t: $(FUZZ_SECONDS) s on $$corpus (log $$log)"; \
	  SWIFT_BACKTRACE=enable=no $(FUZZ_DIR)/fuzz-$$t $$corpus $$dict -max_total_time=$(FUZZ_SECONDS) $(FUZZ_LIBFLAGS) \
	    -artifact_prefix=$$crashes/ $(FUZZ_FLAGS) > $$log 2>&1; status=$$?; \
	  grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb|^#[0-9]+.*DONE' $$log | sed 's/^/  /'; \
	  if [ $$status -ne 0 ]; then \
	    failed="$$failed $$t"; \
	    grep -E 'ERROR|Fatal|SUMMARY|==[0-9]+==' $$log | head -20 | sed 's/^/  /'; \
	    echo "fuzz-$$t: FAILED (exit $$status); crashing input(s):"; \
	    grep -o 'Test unit written to .*' $$log | sed 's/Test unit written to /  /'; \
	    echo "  reproduce: SWIFT_BACKTRACE=enable=no $(FUZZ_DIR)/fuzz-$$t <input>"; \
	  else \
	    echo "fuzz-$$t: no crash ($$(ls $$corpus | wc -l) corpus files)"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: crashes in:$$failed"; exit 1; fi; \
	echo "make fuzz: no crashes"

fuzz-corpus: $(FUZZ_DIR)/fuzz-sparsifier-state
	$(PYTHON) fuzz/make-corpus.py
	rm -rf fuzz/corpus/sparsifier-state
	SWIFT_BACKTRACE=enable=no FUZZ_WRITE_SEEDS=fuzz/corpus/sparsifier-state \
	  $(FUZZ_DIR)/fuzz-sparsifier-state

fuzz-clean:
	rm -rf $(FUZZ_DIR)
