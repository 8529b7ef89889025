# Distributed-training checks under mpirun on one machine (Tests/mpi/mpi.sh): data-parallel and
# P-GaP equivalence with one process at 2 and 4 ranks, mask agreement, a killed rank, the
# build without MPI. Part of make test when mpirun is installed (scripts/install-deps.sh
# installs Open MPI). Like the other command-line checks (mk/*.mk) it runs the release build, the
# binary users run: the debug build's C kernels are unoptimised, and the checks took 2–6× longer
# on it (this one 161 s against 37 s; all six 252 s against 69 s, in a fresh clone).
.PHONY: test-mpi

test-mpi: build
	bash Tests/mpi/mpi.sh $(COPPICE)

ifneq ($(shell command -v mpirun 2>/dev/null),)
TEST_EXTRA += test-mpi
endif
