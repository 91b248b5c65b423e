# SPDX-License-Identifier: ISC
# p2pvbd build. `make` builds build/p2pvbd; `make test`, `make demo` and
# `make bench` first install any missing Debian packages (tools/install-deps.sh).
#
# Variables: BUILD (output directory, default build), SAN=1 (AddressSanitizer
# and UndefinedBehaviorSanitizer), CC; for `make soak`: SOAK_SEEDS, SOAK_SECONDS,
# SOAK_FIRST, SOAK_ARGS.

BUILD	?= build
comma	:= ,
ifeq ($(origin CC),default)
CC	:= gcc
endif
SAN	?=
OPT	?= -O2

CFLAGS	:= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wmissing-prototypes -Werror $(OPT) -g -pthread -Iproto -Ip2pvbd -Itracker $(EXTRA_CFLAGS)
LDLIBS	:= -levent -lsodium -pthread
# sd_notify: readiness and shutdown under systemd (a no-op elsewhere).
LDLIBS	+= -lsystemd
# GnuTLS: TLS on the NBD export (nbd_tls.c), as QEMU, nbdkit and libnbd do it.
LDLIBS	+= -lgnutls
# jansson: JSON for QMP (qmp.c); libnbd: reading NBD sources (seed nbd+unix://...).
LDLIBS	+= -ljansson -lnbd
ifneq ($(SAN),)
CFLAGS	+= -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS	+= -fsanitize=address,undefined
endif

# p2pvbd itself: the command table and one file per command (p2pvbd/cli/). Their shared
# helpers, cli.c, go into the library: p2pvbd-tracker uses them too.
MAIN_SRC := $(filter-out p2pvbd/cli/cli.c,$(sort $(wildcard p2pvbd/cli/*.c)))
MAIN_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(MAIN_SRC))
LIB_SRC	:= $(sort $(wildcard p2pvbd/*.c p2pvbd/swarm/*.c proto/*.c) p2pvbd/cli/cli.c)
# The tracker daemon: tracker/main.c plus the tables and codec (also linked into unit-tests).
TRACKER_SRC := $(wildcard tracker/*.c)
TRACKER_LIB_SRC := $(filter-out tracker/main.c,$(sort $(TRACKER_SRC)))
TRACKER_LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(TRACKER_LIB_SRC))
HDRS	:= $(wildcard p2pvbd/*.h p2pvbd/cli/*.h p2pvbd/swarm/*.h proto/*.h tracker/*.h)
LIB_OBJ	:= $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNIT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_SRC))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps test unit integration soak fuzz fuzz-smoke fuzz-long fuzz-seeds demo bench bench-fault bench-live bench-swarm bench-tracker format clean
.PHONY: bench-vm

all: $(BUILD)/p2pvbd $(BUILD)/badpeer $(BUILD)/p2pvbd-tracker

# -MMD -MP: the compiler writes each object's header dependencies (.d beside it); a
# changed Makefile (flags) rebuilds everything.
$(BUILD)/obj/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

$(BUILD)/libp2pvbd.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/p2pvbd: $(MAIN_OBJ) $(BUILD)/libp2pvbd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A misbehaving peer for the integration tests (tests/tools/badpeer.c).
$(BUILD)/badpeer: $(BUILD)/obj/tests/tools/badpeer.o $(BUILD)/libp2pvbd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libtracker.a: $(TRACKER_LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/p2pvbd-tracker: $(BUILD)/obj/tracker/main.o $(BUILD)/libtracker.a $(BUILD)/libp2pvbd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Announce load generator for tools/bench_tracker.sh (tools/annload.c): libc only.
$(BUILD)/annload: tools/annload.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

$(BUILD)/unit-tests: $(UNIT_OBJ) $(BUILD)/libtracker.a $(BUILD)/libp2pvbd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

deps:
	@tools/install-deps.sh

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests --jobs 2

# Everything: unit + integration tests, then the same under ASan/UBSan,
# then a short run of every fuzz harness.
test: deps
	@tests/run-all.sh

integration: all
	tests/integration/run.sh $(BUILD)/p2pvbd

# The model-based randomized live-migration test (tests/model/live_model.py) over many seeds:
# SOAK_SEEDS of them (default 300), or as many as fit in SOAK_SECONDS if that is set, from
# SOAK_FIRST (default: random; printed). SOAK_ARGS adds options, e.g. "-x --keep-failed".
SOAK_SEEDS ?= 300
soak: deps all
	/usr/bin/python3 tests/model/live_model.py --bin $(BUILD)/p2pvbd \
		$(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS),--count $(SOAK_SEEDS)) \
		$(if $(SOAK_FIRST),--first $(SOAK_FIRST)) $(SOAK_ARGS)

# libFuzzer harnesses (clang). fuzz-smoke runs each for a few seconds.
FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Iproto -Ip2pvbd -Itracker -fsanitize=fuzzer,address,undefined
# The library is compiled once with the fuzzer's instrumentation (fuzzer-no-link: no main),
# and every harness links it: not one compile of every source per harness.
FUZZ_LIB_CFLAGS := $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS))
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC) $(TRACKER_LIB_SRC))
$(FUZZ_BUILD)/obj/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	clang $(FUZZ_LIB_CFLAGS) -MMD -MP -c -o $@ $<
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
$(FUZZ_BUILD)/libp2pvbd-fuzz.a: $(FUZZ_LIB_OBJ)
	rm -f $@
	ar rcs $@ $^
fuzz: $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libp2pvbd-fuzz.a $(HDRS) $(wildcard tests/fuzz/*.h)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_BUILD)/libp2pvbd-fuzz.a $(LDLIBS)
# Each harness starts from a copy of its corpus (tests/fuzz/corpus/NAME/), so that the
# tree is not changed; crash inputs go to build-fuzz/.
FUZZ_CORPUS := tests/fuzz/corpus
FUZZ_MAX_LEN := 70000
FUZZ_NAMES = $(or $(FUZZ_ONLY),$(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC)))
fuzz-smoke: fuzz
	@for h in $(FUZZ_NAMES); do f=$(FUZZ_BUILD)/$$h; t=$$(mktemp -d) || exit 1; \
		echo "fuzz: $$f"; cp -R $(FUZZ_CORPUS)/$$h/. $$t/ 2>/dev/null; \
		$$f $$t -max_total_time=$${FUZZ_SECONDS:-10} -max_len=$(FUZZ_MAX_LEN) \
			-artifact_prefix=$(FUZZ_BUILD)/$$h- >$$f.log 2>&1; rc=$$?; rm -rf $$t; \
		[ $$rc -eq 0 ] || { tail -40 $$f.log; exit 1; }; done

# make fuzz-long [FUZZ_SECONDS=120] [FUZZ_ONLY="fuzz_delta_signed ..."]: each harness in
# turn (one process: the machine may be shared) for FUZZ_SECONDS, from its corpus; then the
# corpus is replaced by the minimized union of the old one and what the run found
# (-merge=1), ready to commit. Prints each run's final line (executions, cov: edges).
# FUZZ_ARGS adds libFuzzer options (e.g. -print_coverage=1; the log is build-fuzz/NAME.long.log).
fuzz-long: fuzz
	@for h in $(FUZZ_NAMES); do f=$(FUZZ_BUILD)/$$h; c=$(FUZZ_CORPUS)/$$h; \
		t=$$(mktemp -d) || exit 1; mkdir -p $$c $$t/new $$t/min; \
		$$f $$t/new $$c -max_total_time=$${FUZZ_SECONDS:-120} -max_len=$(FUZZ_MAX_LEN) \
			-print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$h- $(FUZZ_ARGS) >$$f.long.log 2>&1 \
		|| { tail -40 $$f.long.log; rm -rf $$t; exit 1; }; \
		echo "$$h: $$(grep -E '^#[0-9]+' $$f.long.log | tail -1)"; \
		$$f -merge=1 -max_len=$(FUZZ_MAX_LEN) $$t/min $$c $$t/new >$$f.merge.log 2>&1 \
		|| { tail -20 $$f.merge.log; rm -rf $$t; exit 1; }; \
		rm -f $$c/*; cp $$t/min/* $$c/ 2>/dev/null; rm -rf $$t; \
		echo "$$h: corpus $$(ls $$c | wc -l) inputs, $$(cat $$c/* | wc -c) bytes"; done

# The seed inputs that harnesses write themselves from the real encoders (FUZZ_WRITE_SEEDS).
FUZZ_SEEDED := fuzz_manifest fuzz_delta fuzz_manifest_signed fuzz_delta_signed
fuzz-seeds: fuzz
	@for h in $(FUZZ_SEEDED); do mkdir -p $(FUZZ_CORPUS)/$$h && \
		FUZZ_WRITE_SEEDS=$(FUZZ_CORPUS)/$$h $(FUZZ_BUILD)/$$h >/dev/null 2>&1 || exit 1; done

demo: deps all
	tools/demo.sh $(BUILD)/p2pvbd

# Everything: hashing and loopback fetch (bench.sh), the NBD export's
# fault latency in the lab and its local read speed (bench_fault.sh), the swarm
# against T_min and libtorrent (bench_swarm.sh), announces/s against
# opentracker (bench_tracker.sh), live migration: write overhead at the source,
# switchover downtime and total time against the link (bench_live.sh).
# tools/bench_all.sh runs them all even when one fails, then names what failed.
bench: deps all $(BUILD)/annload
	tools/bench_all.sh $(BUILD)

bench-fault: deps all
	tools/bench_fault.sh $(BUILD)/p2pvbd

# Live migration (bench-out/bench-live.json): seed -e write IOPS against qemu-nbd
# and nbdkit, freeze-to-answer downtime at 1 and 16 GiB, total time against the link.
bench-live: deps all
	tools/bench_live.sh $(BUILD)/p2pvbd

# The swarm in the lab: N=8 destinations against Kumar-Ross T_min, unicast and
# stock BitTorrent (python3-libtorrent); plot in bench-out/bench-swarm.png.
bench-swarm: deps all
	tools/bench_swarm.sh $(BUILD)/p2pvbd $(BUILD)/p2pvbd-tracker

# A running VM (TCG, 2 GiB qcow2 with 512 MiB of data, writing) moved in the lab at 100 Mbit/s:
# p2pvbd (seed --qmp, fetch --qmp) against QEMU's own mirror + migrate (bench-out/bench-vm.json).
bench-vm: deps all
	tools/bench_vm.sh $(BUILD)/p2pvbd $(BUILD)/p2pvbd-tracker

# Announces per second of p2pvbd-tracker vs opentracker (build/bench/tracker.json).
bench-tracker: deps all $(BUILD)/annload
	tools/bench_tracker.sh $(BUILD)/p2pvbd-tracker $(BUILD)/annload

# `make install` (GNU conventions: PREFIX, DESTDIR; builds nothing that `make` has built):
# the programs to $(PREFIX)/bin, the man pages to $(PREFIX)/share/man, the systemd units to
# $(PREFIX)/lib/systemd/system with their ExecStart paths pointing at $(PREFIX)/bin.
# `make uninstall` removes exactly these files. Neither needs root when DESTDIR is yours.
.PHONY: install uninstall
PREFIX	?= /usr/local
BINDIR	:= $(PREFIX)/bin
MANDIR	:= $(PREFIX)/share/man
UNITDIR	:= $(PREFIX)/lib/systemd/system
PROGRAMS := p2pvbd p2pvbd-tracker
MAN1	:= $(notdir $(wildcard docs/man/*.1))
MAN8	:= $(notdir $(wildcard docs/man/*.8))
UNITS	:= $(notdir $(wildcard systemd/*.service))

install: $(addprefix $(BUILD)/,$(PROGRAMS))
	for p in $(PROGRAMS); do install -D -m 0755 $(BUILD)/$$p "$(DESTDIR)$(BINDIR)/$$p" || exit 1; done
	for m in $(MAN1); do install -D -m 0644 docs/man/$$m "$(DESTDIR)$(MANDIR)/man1/$$m" || exit 1; done
	for m in $(MAN8); do install -D -m 0644 docs/man/$$m "$(DESTDIR)$(MANDIR)/man8/$$m" || exit 1; done
	for u in $(UNITS); do \
		sed 's|/usr/bin/p2pvbd|$(BINDIR)/p2pvbd|g' systemd/$$u | \
		install -D -m 0644 /dev/stdin "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; done

uninstall:
	rm -f $(foreach f,$(PROGRAMS),"$(DESTDIR)$(BINDIR)/$(f)") \
		$(foreach f,$(MAN1),"$(DESTDIR)$(MANDIR)/man1/$(f)") \
		$(foreach f,$(MAN8),"$(DESTDIR)$(MANDIR)/man8/$(f)") \
		$(foreach f,$(UNITS),"$(DESTDIR)$(UNITDIR)/$(f)")

format:
	clang-format -i $(wildcard p2pvbd/*.[ch] p2pvbd/cli/*.[ch] p2pvbd/swarm/*.[ch] proto/*.[ch] tracker/*.[ch] tests/unit/*.c tests/fuzz/*.c)

clean:
	rm -rf build build-san build-fuzz
