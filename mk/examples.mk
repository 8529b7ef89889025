# The C and C++ examples, and the installed-library check. Included by the top Makefile.
#   make examples        build examples/c and examples/cpp into .build/examples/{c,cpp}
#   make test-examples   build them with -Wall -Wextra -Werror -pedantic and run them on small
#                        Fashion-MNIST subsets (limits: EXAMPLES_ENGINE_ARGS, EXAMPLES_MLP_ARGS);
#                        they demonstrate, the checks of the same calls are in Tests/abi
#                        (make test-abi) and bindings/cpp/tests (make test-cpp)
#   make test-cpp        build and run the tests of bindings/cpp/coppice.hpp (no data needed)
#   make test-install    `make install` into a temporary prefix, then build examples/c/version.c
#                        with `pkg-config coppice` against that copy and run it

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

# The installed copy must work on its own: found by pkg-config, no Swift libraries needed.
# `-o lib`: lib is already up to date (a prerequisite here); building it again in the sub-make
# would rewrite dist/lib/libcoppice.so.* while other targets of a `make -j` may be using it.
test-install: lib
	@set -e; prefix=$$(mktemp -d); trap 'rm -rf "$$prefix"' EXIT; \
	$(MAKE) --no-print-directory -o lib install PREFIX="$$prefix"; \
	flags=$$(PKG_CONFIG_PATH="$$prefix/lib/pkgconfig" pkg-config --cflags --libs coppice); \
	echo "pkg-config --cflags --libs coppice: $$flags"; \
	echo "$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/version.c $$flags"; \
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/version.c $$flags \
	  -o "$$prefix/version"; \
	resolved=$$(LD_LIBRARY_PATH="$$prefix/lib" ldd "$$prefix/version" | grep libcoppice); \
	echo "resolved: $$resolved"; \
	case "$$resolved" in *"$$prefix/lib/"*) ;; \
	  *) echo "test-install: libcoppice did not resolve to the installed copy" >&2; exit 1;; esac; \
	if readelf -d "$$prefix/lib/libcoppice.so.0" | grep NEEDED | grep -i swift; then \
	  echo "test-install: the installed library needs Swift runtime libraries" >&2; exit 1; fi; \
	LD_LIBRARY_PATH="$$prefix/lib" "$$prefix/version"; \
	if [ -f "$$prefix/include/coppice.hpp" ]; then \
	  printf '#include <coppice.hpp>\nint main() { return coppice::version_matches() ? 0 : 1; }\n' \
	    > "$$prefix/version.cpp"; \
	  $(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic "$$prefix/version.cpp" $$flags \
	    -o "$$prefix/version-cpp"; \
	  LD_LIBRARY_PATH="$$prefix/lib" "$$prefix/version-cpp"; \
	  echo "coppice.hpp: installed and usable"; \
	else \
	  echo "note: make install does not install bindings/cpp/coppice.hpp"; \
	fi
	@echo "test-install: passed"

TEST_EXTRA += test-examples test-cpp test-install
