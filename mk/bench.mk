# `coppice bench train` through the command (Tests/cli/bench-train-cli.sh): interleaved dense
# and sparse configurations and the --profile breakdown in text and JSON. Small batches, a few
# seconds; the real benchmarks are `make bench`. Included by the top Makefile; part of make test.
.PHONY: test-bench-train

test-bench-train: build
	bash Tests/cli/bench-train-cli.sh $(COPPICE)

TEST_EXTRA += test-bench-train
