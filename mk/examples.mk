# The C and C++ examples, and the installed-library check. Included by the top Makefile.
#   make examples        build examples/c and examples/cpp into .build/examples/{c,cpp}
#   make test-examples   build them with -Wall -Wextra -Werror -pedantic and run them on small
#                        Fashion-MNIST subsets (limits: EXAMPLES_ENGINE_ARGS, EXAMPLES_MLP_ARGS);
#                        they demonstrate, the checks of the same calls are in Tests/abi
#                        (make test-abi) and bindings/cpp/tests (make test-cpp)
#   make test-cpp        build and run the tests of bindings/cpp/coppice.hpp (no data needed)
#   make test-install    `make install DESTDIR=…` (no Swift build) into a temporary staging tree,
#                        then build examples/c/version.c with `pkg-config coppice` and
#                        examples/cpp with CMake (find_package(coppice CONFIG REQUIRED)) against
#                        that copy and run them

EXAMPLES_BUILD    := .build/examples
EXAMPLES_NAMES    := train_engine sparsify_mlp
EXAMPLES_CFLAGS   := -std=c99 -Wall -Wextra -Werror -pedantic -O2 -Iinclude
EXAMPLES_CXXFLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -O2 -Iinclude -Ibindings/cpp
EXAMPLES_LDLIBS   := -L$(DIST)/lib -lcoppice -Wl,-rpath,$(CURDIR)/$(DIST)/lib -lz -lm
# Arguments of the test runs: train_engine <train> <test> <model> <epochs>,
# sparsify_mlp <train> <test> <epochs>.
EXAMPLES_ENGINE_ARGS ?= 3000 1000 mlp 4
EXAMPLES_MLP_ARGS    ?= 3000 1000 4

.PHONY: examples test-examples test-cpp test-install

# Built in the recipe (not as file targets) so that nothing is compiled before `lib` is done,
# even under make -j.
examples: lib
	@mkdir -p $(EXAMPLES_BUILD)/c $(EXAMPLES_BUILD)/cpp
	@set -e; for name in $(EXAMPLES_NAMES); do \
	  echo "$(CC) $(EXAMPLES_CFLAGS) examples/c/$$name.c -o $(EXAMPLES_BUILD)/c/$$name"; \
	  $(CC) $(EXAMPLES_CFLAGS) examples/c/$$name.c -o $(EXAMPLES_BUILD)/c/$$name $(EXAMPLES_LDLIBS); \
	  echo "$(CXX) $(EXAMPLES_CXXFLAGS) examples/cpp/$$name.cpp -o $(EXAMPLES_BUILD)/cpp/$$name"; \
	  $(CXX) $(EXAMPLES_CXXFLAGS) examples/cpp/$$name.cpp -o $(EXAMPLES_BUILD)/cpp/$$name \
	    $(EXAMPLES_LDLIBS); \
	done
	$(CC) $(EXAMPLES_CFLAGS) examples/c/version.c -o $(EXAMPLES_BUILD)/c/version $(EXAMPLES_LDLIBS)

test-examples: lib examples
	$(EXAMPLES_BUILD)/c/version
	@set -e; for lang in c cpp; do \
	  echo "== $(EXAMPLES_BUILD)/$$lang/train_engine $(EXAMPLES_ENGINE_ARGS)"; \
	  $(EXAMPLES_BUILD)/$$lang/train_engine $(EXAMPLES_ENGINE_ARGS); \
	  if [ $$lang = c ]; then \
	    rm -rf $(EXAMPLES_BUILD)/checkpoints; \
	    echo "== train_engine with checkpoints, twice (the second run resumes the finished run)"; \
	    $(EXAMPLES_BUILD)/c/train_engine $(EXAMPLES_ENGINE_ARGS) $(EXAMPLES_BUILD)/checkpoints; \
	    $(EXAMPLES_BUILD)/c/train_engine $(EXAMPLES_ENGINE_ARGS) $(EXAMPLES_BUILD)/checkpoints; \
	  fi; \
	  echo "== $(EXAMPLES_BUILD)/$$lang/sparsify_mlp $(EXAMPLES_MLP_ARGS)"; \
	  $(EXAMPLES_BUILD)/$$lang/sparsify_mlp $(EXAMPLES_MLP_ARGS); \
	done
	@echo "test-examples: all examples passed"

test-cpp: lib
	@mkdir -p $(EXAMPLES_BUILD)/cpp
	$(CXX) $(EXAMPLES_CXXFLAGS) -Wshadow -Wconversion -Wold-style-cast \
	  bindings/cpp/tests/test_coppice_hpp.cpp -o $(EXAMPLES_BUILD)/cpp/test_coppice_hpp \
	  $(EXAMPLES_LDLIBS)
	$(EXAMPLES_BUILD)/cpp/test_coppice_hpp

# The installed copy must work on its own: `make install` into a DESTDIR staging tree (with
# SWIFT=false, so that any attempt to build through the Swift toolchain fails the test), then
# examples/c/version.c built with `pkg-config coppice` and examples/cpp built with CMake
# (find_package(coppice CONFIG REQUIRED), coppice::coppice) against that tree, and run; no Swift
# libraries needed. `-o lib`: lib is a prerequisite here, the sub-make must not rebuild it while
# other targets of a `make -j` may be using dist/lib.
INSTALL_TEST_PREFIX := /opt/coppice

test-install: lib
	@set -e; stage=$$(mktemp -d); trap 'rm -rf "$$stage"' EXIT; \
	prefix="$$stage$(INSTALL_TEST_PREFIX)"; \
	echo "make install PREFIX=$(INSTALL_TEST_PREFIX) DESTDIR=$$stage SWIFT=false"; \
	$(MAKE) --no-print-directory -o lib install PREFIX=$(INSTALL_TEST_PREFIX) DESTDIR="$$stage" \
	  SWIFT=false; \
	for f in lib/libcoppice.so.$(VERSION) lib/libcoppice.so.$(SOVERSION) lib/libcoppice.so \
	    include/coppice.h include/coppice.hpp lib/pkgconfig/coppice.pc \
	    lib/cmake/coppice/coppice-config.cmake lib/cmake/coppice/coppice-config-version.cmake; do \
	  [ -e "$$prefix/$$f" ] || { echo "test-install: $$f was not installed" >&2; exit 1; }; \
	done; \
	if readelf -d "$$prefix/lib/libcoppice.so.$(SOVERSION)" | grep NEEDED | grep -i swift; then \
	  echo "test-install: the installed library needs Swift runtime libraries" >&2; exit 1; fi; \
	flags=$$(PKG_CONFIG_PATH="$$prefix/lib/pkgconfig" pkg-config --cflags --libs coppice); \
	echo "pkg-config --cflags --libs coppice: $$flags"; \
	echo "$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/version.c $$flags"; \
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/version.c $$flags \
	  -o "$$stage/version"; \
	resolved=$$(LD_LIBRARY_PATH="$$prefix/lib" ldd "$$stage/version" | grep libcoppice); \
	echo "resolved: $$resolved"; \
	case "$$resolved" in *"$$prefix/lib/"*) ;; \
	  *) echo "test-install: libcoppice did not resolve to the installed copy" >&2; exit 1;; esac; \
	LD_LIBRARY_PATH="$$prefix/lib" "$$stage/version"; \
	printf '#include <coppice.hpp>\nint main() { return coppice::version_matches() ? 0 : 1; }\n' \
	  > "$$stage/version.cpp"; \
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic "$$stage/version.cpp" $$flags \
	  -o "$$stage/version-cpp"; \
	LD_LIBRARY_PATH="$$prefix/lib" "$$stage/version-cpp"; \
	echo "coppice.hpp: installed and usable through pkg-config"; \
	echo "cmake -S examples/cpp -DCMAKE_PREFIX_PATH=$$prefix (find_package(coppice CONFIG REQUIRED))"; \
	cmake -S examples/cpp -B "$$stage/cmake-build" -DCMAKE_PREFIX_PATH="$$prefix" \
	  -DCMAKE_CXX_COMPILER=$(CXX) -DCMAKE_BUILD_TYPE=Release > "$$stage/cmake.log" 2>&1 \
	  || { cat "$$stage/cmake.log"; exit 1; }; \
	cmake --build "$$stage/cmake-build" -j 2 > "$$stage/cmake-build.log" 2>&1 \
	  || { cat "$$stage/cmake-build.log"; exit 1; }; \
	resolved=$$(ldd "$$stage/cmake-build/train_engine" | grep libcoppice); \
	echo "CMake-built train_engine: $$resolved"; \
	case "$$resolved" in *"$$prefix/lib/"*) ;; \
	  *) echo "test-install: the CMake build did not link the installed copy" >&2; exit 1;; esac; \
	echo "== train_engine $(EXAMPLES_ENGINE_ARGS) (CMake build)"; \
	"$$stage/cmake-build/train_engine" $(EXAMPLES_ENGINE_ARGS)
	@echo "test-install: passed"

TEST_EXTRA += test-examples test-cpp test-install
