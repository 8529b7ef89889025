# Coppice as a SwiftPM dependency of another package. Included by the top Makefile; both are
# part of `make test` (a debug build of Coppice each, well under a minute).
#   make test-swift-package   build and run examples/swift-package, which depends on Coppice by
#                             path (this checkout)
#   make test-swift-version   the same program in a package that depends on Coppice by version,
#                             `.package(url: "file://…", from: "0.1.0")`: the working tree is
#                             copied into a temporary git repository under .build/swiftpm, which
#                             alone gets the tag (the project's repository is never tagged). This
#                             is what SwiftPM refuses for a package whose targets use unsafeFlags
#                             unless its tools-version is 6.2 or newer (SwiftPM's dependency
#                             cache is off for it: the tag moves with every run)

SWIFTPM_DIR := $(CURDIR)/.build/swiftpm

.PHONY: test-swift-package test-swift-version
TEST_EXTRA += test-swift-package test-swift-version

test-swift-package: $(STAMP)
	$(SWIFT) build --package-path examples/swift-package --scratch-path $(SWIFTPM_DIR)/by-path
	$(SWIFTPM_DIR)/by-path/debug/coppice-dependent

test-swift-version: $(STAMP)
	@rm -rf $(SWIFTPM_DIR)/release-repo $(SWIFTPM_DIR)/by-version
	@mkdir -p $(SWIFTPM_DIR)/release-repo $(SWIFTPM_DIR)/by-version
	@git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 -I{} sh -c 'test -e "{}" && cp --parents "{}" $(SWIFTPM_DIR)/release-repo/ || true'
	@cd $(SWIFTPM_DIR)/release-repo && git init -q && git add -A && \
	  git -c user.name=test -c user.email=test@localhost commit -qm "release candidate" && \
	  git tag $(VERSION)
	@cp -r examples/swift-package/Sources $(SWIFTPM_DIR)/by-version/
	sed -e 's|\.package(name: "Coppice", path: "../..")|.package(url: "file://$(SWIFTPM_DIR)/release-repo", from: "$(VERSION)")|' \
	  -e 's|package: "Coppice")|package: "release-repo")|' \
	  examples/swift-package/Package.swift > $(SWIFTPM_DIR)/by-version/Package.swift
	@grep -q 'from: "$(VERSION)"' $(SWIFTPM_DIR)/by-version/Package.swift
	$(SWIFT) build --package-path $(SWIFTPM_DIR)/by-version --disable-dependency-cache
	$(SWIFTPM_DIR)/by-version/.build/debug/coppice-dependent
