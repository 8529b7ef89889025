# End-to-end checkpoint checks through the coppice command (Tests/cli/checkpoint-cli.sh): Ctrl-C and
# exact --resume, kill -9 during saves, a full disk, inspect and export. Included by the top
# Makefile; part of make test.
.PHONY: test-checkpoints

test-checkpoints: $(STAMP)
	$(SWIFT) build --product coppice
	bash Tests/cli/checkpoint-cli.sh .build/debug/coppice

TEST_EXTRA += test-checkpoints
