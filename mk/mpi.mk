# Distributed-training checks under mpirun on one machine (Tests/mpi/mpi.sh): data-parallel and
# P-GaP equivalence with one process at 2 and 4 ranks, mask agreement, a killed rank, the
# build without MPI. Part of make test when mpirun is installed (scripts/install-deps.sh
# installs Open MPI).
.PHONY: test-mpi

test-mpi: $(STAMP)
	$(SWIFT) build --product coppice
	bash Tests/mpi/mpi.sh .build/debug/coppice

ifneq ($(shell command -v mpirun 2>/dev/null),)
TEST_EXTRA += test-mpi
endif
