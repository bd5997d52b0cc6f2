# floyd's two everyday commands, and the C, C++ and Python sides of floyd.
#
#   make demo [NODES=5]         a local 3-node raftis cluster (Redis protocol and HTTP)
#                               in the background; prints how to talk to it
#   make demo-stop              stops it
#   make tour                   the in-process tour: a scripted 3-node cluster, then a prompt
#   make bench                  the benchmark suite (BENCHMARKS.md) as a Markdown table
#   make test                   every test: Rust (cargo test), C, C++, Python, examples
#   make check                  build libfloyd, then test C (also under ASan, and
#                               statically linked), C++, Python and the examples
#   make install PREFIX=/usr/local [PROFILE=release]
#                               headers, libfloyd.so.X.Y.Z (+ .so.X, .so links),
#                               libfloyd.a, floyd.pc and the CMake package
#   make harness-firewall       the fault harness again, in a private network namespace,
#                               with iptables partitions too (root; FLOYD_HARNESS_SECS=600 to soak)
#   make abi-check              include/floyd.h against the baseline abi/floyd.h.abi
#   make abi-bless              rewrite the baseline (refused unless the major version changed)
#
# Compile and link flags for your own programs: see README.md, "Use from C / C++".

CARGO_TARGET_DIR ?= $(HOME)/.cache/floyd/target
export CARGO_TARGET_DIR
PROFILE ?= debug
LIBDIR := $(CARGO_TARGET_DIR)/$(PROFILE)
OUT := $(CARGO_TARGET_DIR)/bindings-$(PROFILE)
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
# What a static libfloyd.a needs after it (`cargo rustc -- --print native-static-libs`).
NATIVE_LIBS := -lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
# The same as a CMake list, for floyd::floyd_static.
CMAKE_NATIVE_LIBS := $(subst $() ,;,$(patsubst -l%,%,$(NATIVE_LIBS)))

CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -g -Iinclude
CXXFLAGS := -std=c++11 -Wall -Wextra -Werror -pedantic -g -Iinclude -Ibindings/cpp
SHARED := -L$(LIBDIR) -lfloyd -Wl,-rpath,$(LIBDIR) -lpthread
STATIC := $(LIBDIR)/libfloyd.a $(NATIVE_LIBS)
ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: demo demo-stop tour bench test harness-firewall deps check lib c-test cpp-test python-test examples install install-test \
	abi-check abi-bless abi-test lib-check contrib-check

NODES ?= 3

demo: deps
	scripts/demo.sh start --nodes $(NODES)

demo-stop:
	scripts/demo.sh stop

tour: deps
	cargo run --example cluster_demo -- -i

bench: deps
	scripts/bench-suite.sh

test: deps
	cargo test
	$(MAKE) --no-print-directory check

deps:
	@scripts/install-deps.sh

# Built first, outside the namespace: inside it there is no network but loopback.
harness-firewall: deps
	cargo test --no-run --test fault_harness
	@if ! unshare --net true 2>/dev/null; then \
		echo "harness-firewall: SKIPPED: no private network namespace here (needs root: unshare -n)"; \
	else \
		unshare --net sh -c 'ip link set lo up && FLOYD_HARNESS_FIREWALL=1 \
			cargo test --offline --test fault_harness -- --nocapture'; \
	fi

check: c-test cpp-test python-test examples install-test lib-check abi-check abi-test contrib-check

# The alert rules and the dashboard name only metrics floyd exposes.
contrib-check:
	python3 scripts/check-contrib.py

# The libfloyd.so.MAJOR link lets programs linked in the build directory find the
# library by its SONAME.
lib:
	cargo build --lib $(CARGO_FLAGS)
	ln -sf libfloyd.so $(LIBDIR)/libfloyd.so.$(MAJOR)

$(OUT):
	mkdir -p $@

c-test: lib | $(OUT)
	$(CC) $(CFLAGS) tests/c/test_api.c $(SHARED) -o $(OUT)/test_api
	$(OUT)/test_api
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_api.c $(SHARED) -o $(OUT)/test_api_asan
	$(OUT)/test_api_asan
	$(CC) $(CFLAGS) tests/c/test_api.c $(STATIC) -o $(OUT)/test_api_static
	$(OUT)/test_api_static
	$(CC) $(CFLAGS) tests/c/test_state_machine.c $(SHARED) -o $(OUT)/test_state_machine
	$(OUT)/test_state_machine
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_state_machine.c $(SHARED) -o $(OUT)/test_state_machine_asan
	$(OUT)/test_state_machine_asan
	$(CC) $(CFLAGS) tests/c/test_host.c $(SHARED) -o $(OUT)/test_host
	$(OUT)/test_host
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_host.c $(SHARED) -o $(OUT)/test_host_asan
	$(OUT)/test_host_asan
	$(CC) $(CFLAGS) tests/c/test_coordination.c $(SHARED) -o $(OUT)/test_coordination
	$(OUT)/test_coordination
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_coordination.c $(SHARED) -o $(OUT)/test_coordination_asan
	$(OUT)/test_coordination_asan
	$(CC) $(CFLAGS) tests/c/test_leases.c $(SHARED) -o $(OUT)/test_leases
	$(OUT)/test_leases
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_leases.c $(SHARED) -o $(OUT)/test_leases_asan
	$(OUT)/test_leases_asan
	$(CC) $(CFLAGS) tests/c/test_watches.c $(SHARED) -o $(OUT)/test_watches
	$(OUT)/test_watches
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_watches.c $(SHARED) -o $(OUT)/test_watches_asan
	$(OUT)/test_watches_asan

cpp-test: lib | $(OUT)
	$(CXX) $(CXXFLAGS) bindings/cpp/test/standalone.cpp $(SHARED) -o $(OUT)/cpp_standalone
	$(OUT)/cpp_standalone
	$(CXX) $(CXXFLAGS) bindings/cpp/test/floyd_test.cpp $(SHARED) -o $(OUT)/cpp_test
	$(OUT)/cpp_test
	$(CXX) $(CXXFLAGS) bindings/cpp/test/state_machine_test.cpp $(SHARED) -o $(OUT)/cpp_state_machine_test
	$(OUT)/cpp_state_machine_test
	$(CXX) $(CXXFLAGS) bindings/cpp/test/host_test.cpp $(SHARED) -o $(OUT)/cpp_host_test
	$(OUT)/cpp_host_test
	$(CXX) $(CXXFLAGS) $(ASAN) bindings/cpp/test/host_test.cpp $(SHARED) -o $(OUT)/cpp_host_test_asan
	$(OUT)/cpp_host_test_asan
	$(CXX) $(CXXFLAGS) bindings/cpp/test/coordination_test.cpp $(SHARED) -o $(OUT)/cpp_coordination_test
	$(OUT)/cpp_coordination_test
	$(CXX) $(CXXFLAGS) $(ASAN) bindings/cpp/test/coordination_test.cpp $(SHARED) -o $(OUT)/cpp_coordination_test_asan
	$(OUT)/cpp_coordination_test_asan
	$(CXX) $(CXXFLAGS) bindings/cpp/test/lease_test.cpp $(SHARED) -o $(OUT)/cpp_lease_test
	$(OUT)/cpp_lease_test
	$(CXX) $(CXXFLAGS) $(ASAN) bindings/cpp/test/lease_test.cpp $(SHARED) -o $(OUT)/cpp_lease_test_asan
	$(OUT)/cpp_lease_test_asan
	$(CXX) $(CXXFLAGS) bindings/cpp/test/watch_test.cpp $(SHARED) -o $(OUT)/cpp_watch_test
	$(OUT)/cpp_watch_test
	$(CXX) $(CXXFLAGS) $(ASAN) bindings/cpp/test/watch_test.cpp $(SHARED) -o $(OUT)/cpp_watch_test_asan
	$(OUT)/cpp_watch_test_asan

python-test: lib
	cd bindings/python && FLOYD_LIB=$(LIBDIR)/libfloyd.so python3 -m pytest -q tests

examples: lib | $(OUT)
	$(CC) $(CFLAGS) examples/c/cluster.c $(SHARED) -o $(OUT)/c_cluster
	$(OUT)/c_cluster
	$(CC) $(CFLAGS) examples/c/ledger.c $(SHARED) -o $(OUT)/c_ledger
	$(OUT)/c_ledger
	$(CXX) $(CXXFLAGS) -O2 examples/cpp/write_bench.cpp $(SHARED) -o $(OUT)/write_bench
	$(OUT)/write_bench 4 128 200

install: lib
	install -d $(DESTDIR)$(PREFIX)/include/floyd $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/cmake/floyd
	install -m 644 include/floyd.h bindings/cpp/floyd.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 644 bindings/cpp/floyd/*.hpp $(DESTDIR)$(PREFIX)/include/floyd/
	install -m 755 $(LIBDIR)/libfloyd.so $(DESTDIR)$(PREFIX)/lib/libfloyd.so.$(VERSION)
	ln -sf libfloyd.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libfloyd.so.$(MAJOR)
	ln -sf libfloyd.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libfloyd.so
	install -m 644 $(LIBDIR)/libfloyd.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@NATIVE_LIBS@|$(NATIVE_LIBS)|' \
		floyd.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/floyd.pc
	for f in floydConfig floydConfigVersion; do \
		sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' -e 's|@CMAKE_NATIVE_LIBS@|$(CMAKE_NATIVE_LIBS)|g' \
			cmake/$$f.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/floyd/$$f.cmake || exit 1; \
	done

# Installs into a scratch prefix; builds and runs the C example with pkg-config
# alone and the CMake example (shared and static) with find_package alone.
install-test: | $(OUT)
	rm -rf $(OUT)/prefix $(OUT)/cmake-example
	$(MAKE) --no-print-directory install PREFIX=$(OUT)/prefix
	PKG_CONFIG_PATH=$(OUT)/prefix/lib/pkgconfig sh -c '$(CC) $(CFLAGS) examples/c/cluster.c \
		$$(pkg-config --cflags floyd) $$(pkg-config --libs floyd) -Wl,-rpath,$(OUT)/prefix/lib \
		-o $(OUT)/c_cluster_pc'
	$(OUT)/c_cluster_pc
	@# The installed C++ header finds its parts (floyd/*.hpp) beside it.
	printf '#include <floyd.hpp>\nint main() { floyd::HostOptions h; floyd::Options o; return floyd::Status::OK().ok() && h.workers == 0 && o.members.empty() ? 0 : 1; }\n' > $(OUT)/hpp_installed.cpp
	PKG_CONFIG_PATH=$(OUT)/prefix/lib/pkgconfig sh -c '$(CXX) -std=c++11 -Wall -Wextra -Werror -pedantic $(OUT)/hpp_installed.cpp \
		$$(pkg-config --cflags floyd) $$(pkg-config --libs floyd) -Wl,-rpath,$(OUT)/prefix/lib -o $(OUT)/hpp_installed'
	$(OUT)/hpp_installed
	cmake -S examples/cmake -B $(OUT)/cmake-example -DCMAKE_PREFIX_PATH=$(OUT)/prefix \
		-DCMAKE_BUILD_RPATH=$(OUT)/prefix/lib >/dev/null
	cmake --build $(OUT)/cmake-example
	$(OUT)/cmake-example/app
	$(OUT)/cmake-example/app_static
	@# The three names of the versioned library, and the installed app loads it by its SONAME.
	test -f $(OUT)/prefix/lib/libfloyd.so.$(VERSION) -a ! -L $(OUT)/prefix/lib/libfloyd.so.$(VERSION)
	test "$$(readlink $(OUT)/prefix/lib/libfloyd.so.$(MAJOR))" = libfloyd.so.$(VERSION)
	test "$$(readlink $(OUT)/prefix/lib/libfloyd.so)" = libfloyd.so.$(MAJOR)
	objdump -p $(OUT)/cmake-example/app | grep -q 'NEEDED *libfloyd.so.$(MAJOR)$$'

# The built library: SONAME libfloyd.so.MAJOR, only floyd_* exported, and the
# header's version macros and floyd_version() agree with Cargo.toml.
lib-check: lib | $(OUT)
	objdump -p $(LIBDIR)/libfloyd.so | grep -q 'SONAME *libfloyd.so.$(MAJOR)$$' \
		|| { echo "libfloyd.so: SONAME is not libfloyd.so.$(MAJOR)"; exit 1; }
	@others="$$(nm -D --defined-only $(LIBDIR)/libfloyd.so | awk '{print $$NF}' | grep -v '^floyd_' || true)"; \
		if [ -n "$$others" ]; then echo "libfloyd.so exports symbols other than floyd_*:"; echo "$$others"; exit 1; fi
	printf '#include <floyd.h>\n#include <stdio.h>\n#include <string.h>\nint main(void) { char h[64];\n snprintf(h, sizeof h, "%%d.%%d.%%d", FLOYD_VERSION_MAJOR, FLOYD_VERSION_MINOR, FLOYD_VERSION_PATCH);\n printf("header %%s, library %%s\\n", h, floyd_version());\n return strcmp(h, "$(VERSION)") || strcmp(floyd_version(), "$(VERSION)"); }\n' > $(OUT)/version.c
	$(CC) $(CFLAGS) $(OUT)/version.c $(SHARED) -o $(OUT)/version
	$(OUT)/version

abi-check:
	abi/check.sh

abi-bless:
	abi/check.sh --bless

abi-test:
	abi/test.sh
