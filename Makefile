# memray-c - see README.md. `make V=1` shows full commands.

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
LIBDIR    ?= $(PREFIX)/lib
MANPREFIX ?= $(PREFIX)/share/man
DESTDIR   ?=

BUILD ?= build
SAN   ?=
CC    ?= cc
WARN   = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS ?= -O2 -g
# The filters' hot loop crosses lib/ files (reader, replay, live set):
# link-time optimisation inlines across them (about 12% faster folding).
# The tracker is built without it.
LTO   ?= -flto=auto
ALL_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden \
	-MMD -MP -I$(BUILD)/gen $(SAN)
LDLIBS_TOOLS = -larchive -lz -lzstd -ldw -lelf -lm
LDLIBS_TRACKER = -lunwind -ldl -lpthread -lm

TOOLS   = memray-record memray-stat memray-fold memray-leaks memray-tree memray-flame memray-live memray-diff
LIB_SRC = lib/folded.c lib/ingest.c lib/live.c lib/replay.c lib/symbolize.c lib/collapse.c lib/stream_write.c lib/stream_read.c lib/input.c lib/util.c lib/dump.c \
	lib/intern.c lib/pprof.c lib/speedscope.c
# memray-diff's frames made comparable across checkouts; memray-stat's table of functions
LIB_SRC += lib/frame_norm.c lib/by_function.c lib/symcache.c
# the tracker's parts: lib/tracker/internal.h lists what each one owns
TRACKER_SRC = lib/tracker/hooks.c lib/tracker/boot.c lib/tracker/sink.c lib/tracker/stack.c \
	lib/tracker/threads.c lib/tracker/record.c lib/tracker/blocks.c lib/tracker/sample.c \
	lib/tracker/modules.c lib/tracker/sampler.c lib/tracker/lifecycle.c lib/tracker/attach.c \
	lib/tracker/api.c lib/tracker/exec.c lib/tracker/python.c lib/tracker/got.c \
	lib/tracker/signals.c lib/tracker/unwind.c lib/tracker/order.c \
	lib/stream_write.c
UNIT_SRC = $(wildcard tests/unit/test_*.c)
FIXTURE_SRC = $(filter-out tests/fixtures/dlopened.c,$(wildcard tests/fixtures/*.c))
FIXTURE_CXX = $(wildcard tests/fixtures/*.cc)

ifeq ($(V),1)
Q =
else
Q = @
endif

LIB_OBJ     = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TRACKER_OBJ = $(TRACKER_SRC:%.c=$(BUILD)/obj/tracker/%.o)
TOOL_BINS   = $(TOOLS:%=$(BUILD)/bin/%)
TRACKER     = $(BUILD)/lib/memray-c/libmemray-tracker.so
UNIT_BINS   = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FIXTURES    = $(FIXTURE_SRC:tests/fixtures/%.c=$(BUILD)/fixtures/%) \
              $(FIXTURE_CXX:tests/fixtures/%.cc=$(BUILD)/fixtures/%)

all: $(TOOL_BINS) $(TRACKER)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) $(LTO) -c -o $@ $<

# The tracker is never built with sanitizers: it is preloaded into
# programs that do not carry their runtime.
$(BUILD)/obj/tracker/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $< (tracker)")
	$(Q)$(CC) $(filter-out $(SAN),$(ALL_CFLAGS)) -c -o $@ $<

# memray-flame's page is written as HTML and built in as a C string.
$(BUILD)/gen/flame_page.h: cmd/memray-flame/flame.html cmd/memray-flame/embed.sed
	@mkdir -p $(@D)
	$(Q){ echo '/* generated from flame.html: do not edit */'; \
	  echo 'static const char flame_page[] ='; \
	  sed -f cmd/memray-flame/embed.sed $<; echo ';'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/cmd/memray-flame/main.o: $(BUILD)/gen/flame_page.h

$(BUILD)/libmemray.a: $(LIB_OBJ)
	$(Q)rm -f $@ && gcc-ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/obj/cmd/%/main.o $(BUILD)/libmemray.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $(SAN) $(LTO) -o $@ $^ $(LDLIBS_TOOLS)

$(BUILD)/bin/memray-record: $(BUILD)/obj/cmd/memray-record/attach.o $(BUILD)/obj/cmd/memray-record/rechunk.o

$(TRACKER): $(TRACKER_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-z,nodelete -Wl,-z,now -o $@ $^ $(LDLIBS_TRACKER)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libmemray.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(SAN) $(LTO) -o $@ $^ $(LDLIBS_TOOLS)

# GOT patching is tested on the test program itself.
$(BUILD)/tests/test_got: $(BUILD)/obj/tests/unit/test_got.o $(BUILD)/obj/tracker/lib/tracker/got.o
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(SAN) -o $@ $^ -ldl -lpthread

# Fixture programs keep frame pointers and debug info so that tests can
# check their stacks with addr2line.
$(BUILD)/fixtures/%: tests/fixtures/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) -O0 -g -fno-builtin -fno-omit-frame-pointer -fno-inline -o $@ $< -ldl -lpthread

$(BUILD)/fixtures/%: tests/fixtures/%.cc
	@mkdir -p $(@D)
	$(Q)$(CXX) -O0 -g -fno-omit-frame-pointer -o $@ $<

$(BUILD)/fixtures/libdlopened.so: tests/fixtures/dlopened.c
	@mkdir -p $(@D)
	$(Q)$(CC) -O0 -g -shared -fPIC -o $@ $<

$(BUILD)/fixtures/static-sleeper: tests/fixtures/static/sleeper.c
	@mkdir -p $(@D)
	$(Q)$(CC) -O1 -static -o $@ $<

fixtures: $(FIXTURES) $(BUILD)/fixtures/libdlopened.so $(BUILD)/fixtures/static-sleeper

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do echo "# $$t"; $$t || exit 1; done

# The suite on this machine, then the Python tests on Debian sid's
# CPythons in a chroot (tests/sid.sh; SID=0 leaves them out).
SID ?= 1
check: all fixtures unit
	$(Q){ MEMRAY_BUILD=$(abspath $(BUILD)) bats --tap tests/bats; \
	  if [ "$(SID)" = 1 ]; then tests/sid.sh run; fi; } | tests/summarize

check-sid:
	tests/sid.sh run | tests/summarize

asan:
	$(MAKE) BUILD=build-asan LTO= SID=0 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" check

# The tracker under ThreadSanitizer, with its threaded fixtures built the
# same way (tests/tsan.sh says why and what runs). The tools are plain.
TSAN_BUILD = build-tsan
TSAN_FIXTURES = allocs pingpong sigalloc

tsan:
	$(MAKE) BUILD=$(TSAN_BUILD) LTO= $(TSAN_BUILD)/bin/memray-record $(TSAN_BUILD)/bin/memray-stat
	@mkdir -p $(TSAN_BUILD)/tsan $(TSAN_BUILD)/lib/memray-c $(TSAN_BUILD)/fixtures
	rm -f $(TSAN_BUILD)/tsan/*.o
	$(CC) -O1 -g $(WARN) -std=gnu11 -fPIC -fvisibility=hidden -DMEMRAY_TSAN \
		-c lib/tracker/hooks.c -o $(TSAN_BUILD)/tsan/hooks.o
	for f in $(filter-out lib/tracker/hooks.c,$(TRACKER_SRC)); do \
		$(CC) -O1 -g $(WARN) -std=gnu11 -fPIC -fvisibility=hidden -DMEMRAY_TSAN \
			-fsanitize=thread -c $$f -o $(TSAN_BUILD)/tsan/$$(basename $$f .c).o || exit 1; \
	done
	$(CC) -shared -fsanitize=thread -Wl,-z,nodelete -o $(TSAN_BUILD)/lib/memray-c/libmemray-tracker.so \
		$(TSAN_BUILD)/tsan/*.o $(LDLIBS_TRACKER)
	for f in $(TSAN_FIXTURES); do \
		$(CC) -O0 -g -fsanitize=thread -fno-omit-frame-pointer -o $(TSAN_BUILD)/fixtures/$$f \
			tests/fixtures/$$f.c -ldl -lpthread || exit 1; \
	done
	tests/tsan.sh $(TSAN_BUILD)

# libFuzzer targets (clang): the stream reader with the replay and folding
# behind it, and the collapsed-stack parser with both escapers.
FUZZ_SECONDS ?= 60
FUZZ_BUILD = build-fuzz
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all

fuzz: all fixtures
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang LTO= CFLAGS="-O1 -g" \
		SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" $(FUZZ_BUILD)/libmemray.a
	for t in stream folded; do \
		clang -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -o $(FUZZ_BUILD)/fuzz_$$t \
			tests/fuzz/fuzz_$$t.c $(FUZZ_BUILD)/libmemray.a $(LDLIBS_TOOLS) || exit 1; \
	done
	tests/fuzz/run.sh $(BUILD) $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Real programs, longer: CPython's regression tests, a stdlib compileall,
# gcc, sqlite3 and git, recorded and not (tests/soak.sh).
soak: all
	tests/soak.sh full $(BUILD)

# Issue 18's measures go to $(BUILD)/bench/results.txt as the scripts run;
# bench/summary.sh prints them in one table last.
bench: all
	mkdir -p $(BUILD)/bench && : > $(BUILD)/bench/results.txt
	bench/churn.sh $(BUILD)
	BENCH_RESULTS=$(BUILD)/bench/results.txt bench/python.sh $(BUILD)
	BENCH_RESULTS=$(BUILD)/bench/results.txt bench/streams.sh $(BUILD)
	BENCH_RESULTS=$(BUILD)/bench/results.txt bench/threads.sh $(BUILD)
	bench/fold.sh $(BUILD)
	BENCH_RESULTS=$(BUILD)/bench/results.txt BENCH_FOLD_WORKLOAD=varied BENCH_EVENTS_M=$${BENCH_VARIED_M:-2} bench/fold.sh $(BUILD)
	bench/flame.sh $(BUILD)
	bench/sample.sh $(BUILD)
	bench/reader.sh $(BUILD)
	bench/stacks.sh $(BUILD)
	BENCH_RESULTS=$(BUILD)/bench/results.txt bench/summary.sh $(BUILD)
	if [ "$(SID)" = 1 ]; then tests/sid.sh bench; fi

# Set-up and a first recording on a fresh machine: packages, build, then
# a demo program recorded and summarised.
demo:
	$(MAKE) deps
	$(MAKE) all fixtures
	$(BUILD)/bin/memray-record -f -o demo.bin $(BUILD)/fixtures/demo
	$(BUILD)/bin/memray-fold demo.bin | $(BUILD)/bin/memray-flame --title "memray-c demo" > demo.html
	$(BUILD)/bin/memray-stat demo.bin
	@echo "demo: open demo.html in a browser for the flame graph"

deps:
	tests/deps.sh

# The Python package (memray_c: Tracker, the reader, the pytest plugin,
# the notebook magic, and these tools inside it) is a wheel, installed
# with pip into the interpreter or virtual environment that uses it;
# make install writes nothing for Python (nothing outside PREFIX and
# DESTDIR) and says so. `make wheel` builds it offline with Debian's
# python3-setuptools and python3-wheel.
PYTHON ?= /usr/bin/python3
INCLUDEDIR ?= $(PREFIX)/include

wheel:
	rm -rf $(BUILD)/dist
	MEMRAY_WHEEL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pip wheel -q --no-build-isolation \
		--no-deps --no-index -w $(BUILD)/dist .
	@echo "wheel: $$(ls $(BUILD)/dist/*.whl): python3 -m pip install it into your Python or venv"

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/memray-c $(DESTDIR)$(MANPREFIX)/man1 \
		$(DESTDIR)$(MANPREFIX)/man5 $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(TOOL_BINS) $(DESTDIR)$(BINDIR)
	install -m 755 $(TRACKER) $(DESTDIR)$(LIBDIR)/memray-c
	install -m 644 lib/tracker/memray.h $(DESTDIR)$(INCLUDEDIR)
	install -m 644 man/*.1 $(DESTDIR)$(MANPREFIX)/man1
	install -m 644 man/*.5 $(DESTDIR)$(MANPREFIX)/man5
	@echo "install: the Python package (memray_c, the pytest plugin) is not installed by make install;"
	@echo "install: install it into the Python or venv that uses it: make wheel && python3 -m pip install $(BUILD)/dist/memray_c-*.whl"

# (and what make install wrote for Python before the wheel: a pytest
# plugin in the system Python's site-packages, whose entry point would
# shadow the wheel's)
OLD_PYSITE = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("purelib"))' 2>/dev/null)

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(LIBDIR)/memray-c/libmemray-tracker.so
	rm -f $(DESTDIR)$(INCLUDEDIR)/memray.h
	@if [ -n "$(OLD_PYSITE)" ] && [ -e "$(DESTDIR)$(OLD_PYSITE)/pytest_memray_c.py" ]; then \
		echo "rm -rf $(DESTDIR)$(OLD_PYSITE)/pytest_memray_c.py $(DESTDIR)$(OLD_PYSITE)/memray_c_pytest-0.1.0.dist-info"; \
		rm -rf "$(DESTDIR)$(OLD_PYSITE)/pytest_memray_c.py" "$(DESTDIR)$(OLD_PYSITE)/memray_c_pytest-0.1.0.dist-info"; fi
	-rmdir $(DESTDIR)$(LIBDIR)/memray-c
	rm -f $(patsubst man/%,$(DESTDIR)$(MANPREFIX)/man1/%,$(wildcard man/*.1))
	rm -f $(patsubst man/%,$(DESTDIR)$(MANPREFIX)/man5/%,$(wildcard man/*.5))

clean:
	@if awk -v r="$(abspath build)/" 'index($$2, r) == 1 { f = 1 } END { exit !f }' /proc/mounts; then \
		echo "clean: something is mounted under build/ (the sid chroot's /proc?): umount it first"; exit 1; fi
	rm -rf build build-asan build-fuzz build-tsan build-dev

.PHONY: all fixtures unit check check-sid asan tsan fuzz soak bench demo deps wheel install uninstall clean
.PRECIOUS: $(BUILD)/obj/%.o

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
