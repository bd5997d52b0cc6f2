# floyd's two everyday commands, and the C, C++ and Python sides of floyd.
#
#   make demo                   a local 3-node cluster: a scripted tour, then a prompt
#   make test                   every test: Rust (cargo test), C, C++, Python, examples
#   make check                  build libfloyd, then test C (also under ASan, and
#                               statically linked), C++, Python and the examples
#   make install PREFIX=/usr/local [PROFILE=release]
#                               headers, libfloyd.so, libfloyd.a and floyd.pc
#
# Compile and link flags for your own programs: see README.md, "Use from C / C++".

CARGO_TARGET_DIR ?= $(HOME)/.cache/floyd/target
export CARGO_TARGET_DIR
PROFILE ?= debug
LIBDIR := $(CARGO_TARGET_DIR)/$(PROFILE)
OUT := $(CARGO_TARGET_DIR)/bindings-$(PROFILE)
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# What a static libfloyd.a needs after it (`cargo rustc -- --print native-static-libs`).
NATIVE_LIBS := -lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -g -Iinclude
CXXFLAGS := -std=c++11 -Wall -Wextra -Werror -pedantic -g -Iinclude -Ibindings/cpp
SHARED := -L$(LIBDIR) -lfloyd -Wl,-rpath,$(LIBDIR) -lpthread
STATIC := $(LIBDIR)/libfloyd.a $(NATIVE_LIBS)
ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: demo test deps check lib c-test cpp-test python-test examples install install-test

demo: deps
	cargo run --example cluster_demo -- -i

test: deps
	cargo test
	$(MAKE) --no-print-directory check

deps:
	@scripts/install-deps.sh

check: c-test cpp-test python-test examples install-test

lib:
	cargo build --lib $(CARGO_FLAGS)

$(OUT):
	mkdir -p $@

c-test: lib | $(OUT)
	$(CC) $(CFLAGS) tests/c/test_api.c $(SHARED) -o $(OUT)/test_api
	$(OUT)/test_api
	$(CC) $(CFLAGS) $(ASAN) tests/c/test_api.c $(SHARED) -o $(OUT)/test_api_asan
	$(OUT)/test_api_asan
	$(CC) $(CFLAGS) tests/c/test_api.c $(STATIC) -o $(OUT)/test_api_static
	$(OUT)/test_api_static

cpp-test: lib | $(OUT)
	$(CXX) $(CXXFLAGS) bindings/cpp/test/standalone.cpp $(SHARED) -o $(OUT)/cpp_standalone
	$(OUT)/cpp_standalone
	$(CXX) $(CXXFLAGS) bindings/cpp/test/floyd_test.cpp $(SHARED) -o $(OUT)/cpp_test
	$(OUT)/cpp_test

python-test: lib
	cd bindings/python && FLOYD_LIB=$(LIBDIR)/libfloyd.so python3 -m pytest -q tests

examples: lib | $(OUT)
	$(CC) $(CFLAGS) examples/c/cluster.c $(SHARED) -o $(OUT)/c_cluster
	$(OUT)/c_cluster
	$(CXX) $(CXXFLAGS) -O2 examples/cpp/write_bench.cpp $(SHARED) -o $(OUT)/write_bench
	$(OUT)/write_bench 4 128 200

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/floyd.h bindings/cpp/floyd.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(LIBDIR)/libfloyd.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIBDIR)/libfloyd.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@NATIVE_LIBS@|$(NATIVE_LIBS)|' \
		floyd.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/floyd.pc

# Installs into a scratch prefix and builds the C example with pkg-config alone.
install-test: | $(OUT)
	rm -rf $(OUT)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(OUT)/prefix
	PKG_CONFIG_PATH=$(OUT)/prefix/lib/pkgconfig sh -c '$(CC) $(CFLAGS) examples/c/cluster.c \
		$$(pkg-config --cflags floyd) $$(pkg-config --libs floyd) -Wl,-rpath,$(OUT)/prefix/lib \
		-o $(OUT)/c_cluster_pc'
	$(OUT)/c_cluster_pc
