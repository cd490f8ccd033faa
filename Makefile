# relayq — build, test, install.
#
#   make                 bin/relayqd, bin/relayq, bin/mailq, bin/sendmail
#   make test            deps, build, unit tests, ASan+UBSan unit tests,
#                        clang build, integration tests, and the integration
#                        tests again against the ASan+UBSan daemon
#   make run             deps, build, run relayqd on etc/relayq.cf
#   make SANITIZE=1 test-unit   unit tests under ASan+UBSan
#   make CC=clang        clang build
#   make man             regenerate man/relayq.cf.5 from the parameter table
#   make install PREFIX=/usr/local DESTDIR=...
#   make deb             ./relayq_*.deb and ./relayq-mta_*.deb (dpkg-buildpackage
#                        on a copy of the tree in build-deb/)
#
# Every module is a folder under src/; every .c in it is compiled into
# librelayq.a except src/relayqd (the daemon's main) and src/cli (the CLI's).
# BUILD lets several builds (gcc, clang, sanitizer) share one tree.

CC      ?= cc
PKGS    := libevent libevent_openssl libevent_pthreads openssl libcares sqlite3 libidn2 lmdb libcdb libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1 -g
else
BUILD   ?= build
SANFLAGS :=
OPT     := -O2 -g
endif
BIN     ?= bin

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
           -Wformat=2 -Wvla -Wcast-qual
CFLAGS  ?= $(OPT)
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  := $(PKG_LIBS) -ldb-5.3 -lpthread -lm
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)

LIB_SRC := $(filter-out src/relayqd/% src/cli/%,$(wildcard src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
D_SRC   := $(wildcard src/relayqd/*.c)
D_OBJ   := $(D_SRC:%.c=$(BUILD)/%.o)
C_SRC   := $(wildcard src/cli/*.c)
C_OBJ   := $(C_SRC:%.c=$(BUILD)/%.o)
T_SRC   := $(wildcard tests/unit/test_*.c)
T_BIN   := $(T_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: man all deps run test test-unit test-san test-clang test-integration clean install bench bench-queue bench-table fuzz deb

all: $(BIN)/relayqd $(BIN)/relayq $(BIN)/mailq $(BIN)/sendmail

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/librelayq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/relayqd: $(D_OBJ) $(BUILD)/librelayq.a
	@mkdir -p $(BIN)
	$(CC) $(ALL_LDFLAGS) -o $@ $(D_OBJ) $(BUILD)/librelayq.a $(LDLIBS)

$(BIN)/relayq: $(C_OBJ) $(BUILD)/librelayq.a
	@mkdir -p $(BIN)
	$(CC) $(ALL_LDFLAGS) -o $@ $(C_OBJ) $(BUILD)/librelayq.a $(LDLIBS)

# relayq.cf(5) is generated from the parameter table (src/config/params.c).
man: $(BUILD)/man/mkman
	$(BUILD)/man/mkman > man/relayq.cf.5.tmp && mv man/relayq.cf.5.tmp man/relayq.cf.5

$(BUILD)/man/mkman: man/mkman.c $(BUILD)/librelayq.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/librelayq.a $(LDLIBS)

$(BIN)/mailq $(BIN)/sendmail: $(BIN)/relayq
	ln -sf relayq $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/t.h $(BUILD)/librelayq.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-cast-qual -Wno-format-nonliteral -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(BUILD)/librelayq.a $(LDLIBS)

deps:
	@scripts/deps

run: deps all
	@mkdir -p var/spool
	$(BIN)/relayqd -c etc

# Unit tests of this build (gcc by default, or SANITIZE=1 / CC=clang).
test-unit: $(T_BIN)
	@tests/run-unit $(T_BIN)

test-san:
	$(MAKE) SANITIZE=1 test-unit

test-clang:
	$(MAKE) CC=clang BUILD=build-clang BIN=build-clang/bin all $(patsubst build/%,build-clang/%,$(T_BIN))

test-integration: all
	@tests/run-integration

test: deps
	@tests/run-all

bench-queue: $(BUILD)/tests/bench_queue
	$(BUILD)/tests/bench_queue

$(BUILD)/tests/bench_queue: tests/bench/bench_queue.c $(BUILD)/librelayq.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/librelayq.a $(LDLIBS)

# bench/scale-deferred, bench/view-bench and tests/integration/test_views.py fill a queue with it.
$(BUILD)/tests/inject_deferred: tests/bench/inject_deferred.c $(BUILD)/librelayq.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/librelayq.a $(LDLIBS)

bench-table: $(BUILD)/tests/bench_table
	$(BUILD)/tests/bench_table

$(BUILD)/tests/bench_table: tests/bench/bench_table.c $(BUILD)/librelayq.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/librelayq.a $(LDLIBS)

bench: all
	bench/run-relay-bench

fuzz:
	tests/fuzz/run $(FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/relayq \
		$(DESTDIR)$(UNITDIR)
	install -m 755 $(BIN)/relayqd $(DESTDIR)$(SBINDIR)/relayqd
	install -m 755 $(BIN)/relayq $(DESTDIR)$(BINDIR)/relayq
	ln -sf relayq $(DESTDIR)$(BINDIR)/relayq-mailq
	ln -sf relayq $(DESTDIR)$(BINDIR)/relayq-sendmail
	install -m 644 man/relayqd.8 $(DESTDIR)$(MANDIR)/man8/relayqd.8
	install -m 644 man/relayq.1 $(DESTDIR)$(MANDIR)/man1/relayq.1
	install -m 644 man/relayq.cf.5 $(DESTDIR)$(MANDIR)/man5/relayq.cf.5
	install -m 644 etc/relayq.cf.example $(DESTDIR)$(SYSCONFDIR)/relayq/relayq.cf.example
	sed 's|@SBINDIR@|$(SBINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' etc/relayq.service.in \
		> $(DESTDIR)$(UNITDIR)/relayq.service
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then scripts/deps --users; fi

# Debian packages, built by Debian's tools from debian/ on a copy of the
# source tree (its own build/ inside build-deb/, so other builds here are not
# disturbed); the .deb files land in DEB_OUT (default: here), the .changes
# and .buildinfo in DEB_DIR.
DEB_DIR ?= build-deb
DEB_OUT ?= .
deb:
	rm -f $(DEB_OUT)/relayq_*.deb $(DEB_OUT)/relayq-mta_*.deb
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/relayq
	tar -c --exclude='./build*' --exclude=./bin --exclude=./var --exclude=./.git \
		--exclude='*.deb' --exclude=__pycache__ . | tar -x -C $(DEB_DIR)/relayq
	cd $(DEB_DIR)/relayq && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		dpkg-buildpackage -b -uc -us -j$$(nproc 2>/dev/null || echo 1)
	[ "$$(realpath $(DEB_DIR))" = "$$(realpath $(DEB_OUT))" ] || \
		cp $(DEB_DIR)/relayq_*.deb $(DEB_DIR)/relayq-mta_*.deb $(DEB_OUT)/

clean:
	rm -rf build build-san build-clang bin build-deb

-include $(LIB_OBJ:.o=.d) $(D_OBJ:.o=.d) $(C_OBJ:.o=.d)
