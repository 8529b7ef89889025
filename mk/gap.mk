# GaP options through the coppice command (Tests/cli/gap-cli.sh): effective κ, dense-by-design
# layers, global prunes, restarts, P-GaP partition merge, ERK with kept-dense layers. Included
# by the top Makefile; part of make test.
.PHONY: test-gap-cli

test-gap-cli: build
	bash Tests/cli/gap-cli.sh $(COPPICE)

TEST_EXTRA += test-gap-cli
