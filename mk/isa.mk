# Kernels for any CPU: the sparse kernel tests (Tests/kernels/test_sparse.c) on every
# instruction set the library can pick, including ones this machine does not have. Included by
# the top Makefile; part of `make test` (about 2 minutes, most of it under emulation).
#   make test-kernels-isa        all three below
#   make test-kernels-forced     native build (no -march), run once per instruction set with
#                                COPPICE_ISA=avx512, avx2, generic (each the CPU has; a set
#                                it lacks is reported as skipped)
#   make test-kernels-aarch64    cross-compiled for aarch64 (Debian's gcc-aarch64-linux-gnu,
#                                libgomp) and run under qemu-aarch64: NEON (the generic C kernels
#                                are tested natively and under qemu Nehalem)
#                                (COPPICE_TEST_QUICK=1: the products under 2 threads only)
#   make test-kernels-baseline   the native binary under qemu-x86_64 -cpu Nehalem (SSE4.2, no
#                                AVX): proves that nothing in it (sparse table, target_clones
#                                of the dense-style loops, OpenMP runtime) needs AVX; also
#                                COPPICE_TEST_QUICK=1
# The packages come from scripts/install-deps.sh (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
# qemu-user). Each run prints "N passed, M failed" for its mode.

ISA_OUT      := $(CURDIR)/.build/isa
ISA_NATIVE   := $(ISA_OUT)/x86_64
ISA_AARCH64  := $(ISA_OUT)/aarch64
AARCH64_CC   ?= aarch64-linux-gnu-gcc
AARCH64_ROOT ?= /usr/aarch64-linux-gnu
QEMU_AARCH64 ?= qemu-aarch64
QEMU_X86_64  ?= qemu-x86_64

# The x86 sets the library would detect (sparse/isa.c asks the same of the CPU).
ISA_CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
ISA_HAS_AVX2  := $(and $(filter avx2,$(ISA_CPU_FLAGS)),$(filter fma,$(ISA_CPU_FLAGS)))
ISA_HAS_AVX512 := $(and $(ISA_HAS_AVX2),$(filter avx512f,$(ISA_CPU_FLAGS)),\
                  $(filter avx512bw,$(ISA_CPU_FLAGS)),$(filter avx512dq,$(ISA_CPU_FLAGS)),\
                  $(filter avx512vl,$(ISA_CPU_FLAGS)))

.PHONY: test-kernels-isa test-kernels-forced test-kernels-aarch64 test-kernels-baseline

ifeq ($(shell uname -m),x86_64)
TEST_EXTRA += test-kernels-isa
endif

test-kernels-isa: test-kernels-forced test-kernels-aarch64 test-kernels-baseline

$(ISA_NATIVE)/test_sparse: $(STAMP) FORCE_ISA_BUILD
	@$(MAKE) --no-print-directory -C Tests/kernels OUT=$(ISA_NATIVE) $@

$(ISA_AARCH64)/test_sparse: $(STAMP) FORCE_ISA_BUILD
	@$(MAKE) --no-print-directory -C Tests/kernels OUT=$(ISA_AARCH64) CC=$(AARCH64_CC) \
	  OMP_FLAGS=-fopenmp OMP_LDLIBS=-fopenmp $@

# (Tests/kernels/Makefile decides whether the binaries are up to date.)
.PHONY: FORCE_ISA_BUILD
FORCE_ISA_BUILD:

# Runs a test_sparse binary and prints its summary. $1 command prefix (an emulator), $2
# environment, $3 binary, $4 label, $5 log; fails when the test fails or when it did not test
# exactly the instruction sets $6.
define isa_run
	@$2 $1 $3 > $5 2>&1; status=$$?; grep -v '^ok' $5 | sed 's/^/  /'; \
	  if [ $$status -ne 0 ]; then echo "$4: FAILED (log $5)"; exit 1; fi; \
	  if ! head -1 $5 | grep -qx 'instruction sets tested: $6'; then \
	    echo "$4: expected 'instruction sets tested: $6' (log $5)"; exit 1; fi; \
	  echo "$4: $$(tail -1 $5)"
endef

N_TEST := $(ISA_NATIVE)/test_sparse
A_TEST := $(ISA_AARCH64)/test_sparse

test-kernels-forced: $(N_TEST)
ifneq ($(ISA_HAS_AVX512),)
	$(call isa_run,,COPPICE_ISA=avx512,$(N_TEST),test-kernels-forced avx512,$(ISA_NATIVE)/avx512.log,avx512)
else
	@echo "test-kernels-forced avx512: skipped (this CPU has no AVX-512)"
endif
ifneq ($(ISA_HAS_AVX2),)
	$(call isa_run,,COPPICE_ISA=avx2,$(N_TEST),test-kernels-forced avx2,$(ISA_NATIVE)/avx2.log,avx2)
else
	@echo "test-kernels-forced avx2: skipped (this CPU has no AVX2)"
endif
	$(call isa_run,,COPPICE_ISA=generic,$(N_TEST),test-kernels-forced generic,$(ISA_NATIVE)/generic.log,generic)

test-kernels-aarch64: $(A_TEST)
	$(call isa_run,$(QEMU_AARCH64) -L $(AARCH64_ROOT),COPPICE_TEST_QUICK=1 COPPICE_ISA=neon,$(A_TEST),test-kernels-aarch64 (qemu),$(ISA_AARCH64)/qemu.log,neon)

test-kernels-baseline: $(N_TEST)
	$(call isa_run,$(QEMU_X86_64) -cpu Nehalem,COPPICE_TEST_QUICK=1,$(N_TEST),test-kernels-baseline (qemu Nehalem),$(ISA_NATIVE)/nehalem.log,generic)
