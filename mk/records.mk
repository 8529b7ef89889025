# Run records and plots through the coppice command (Tests/cli/run-records-cli.sh): the fields
# of `train --json` (version, settings as plain values, structured schedule events) and the SVG
# plots of `compare` (zoomed accuracy with a full-range panel, sparsity per epoch with the
# target line), rendered with rsvg-convert. Included by the top Makefile; part of make test.
.PHONY: test-run-records

test-run-records: build
	bash Tests/cli/run-records-cli.sh $(COPPICE)

TEST_EXTRA += test-run-records
