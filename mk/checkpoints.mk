# End-to-end checkpoint checks through the coppice command (Tests/cli/checkpoint-cli.sh): Ctrl-C and
# exact --resume, kill -9 during saves, a full disk, inspect and export. Included by the top
# Makefile; part of make test.
.PHONY: test-checkpoints

test-checkpoints: build
	bash Tests/cli/checkpoint-cli.sh $(COPPICE)

TEST_EXTRA += test-checkpoints
