# Hostile command-line input (Tests/cli/hardening-cli.sh): absurd integers, arguments that are
# not UTF-8, two runs on one checkpoint directory. Included by the top Makefile; part of make test.
.PHONY: test-hardening-cli

test-hardening-cli: build
	bash Tests/cli/hardening-cli.sh $(COPPICE)

TEST_EXTRA += test-hardening-cli
