# cloudrun_sandbox: PGXS build of the extension and the executor program.

EXTENSION = cloudrun_sandbox
EXTVERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(dir $(lastword $(MAKEFILE_LIST)))cloudrun_sandbox.control)

MODULE_big = cloudrun_sandbox
COMMON_OBJS = src/common/sbutil.o src/common/protocol.o src/common/http.o \
	src/common/gcs.o src/common/oauth.o src/common/frame.o
OBJS = src/cloudrun_sandbox.o src/catalog.o src/driver.o src/driver_local.o \
	src/driver_cloudrun.o src/gcloud.o src/exec.o src/session.o src/shared.o src/submit.o \
	src/worker/loop.o src/worker/xact.o src/worker/flight.o \
	src/worker/claim.o src/worker/complete.o src/worker/recover.o src/worker/bgwatch.o \
	src/worker/callback.o src/worker/reaper.o src/fileops.o src/background.o src/roles.o \
	src/local/seccomp.o src/local/storage.o src/local/rmtree.o src/local/spawn.o \
	src/local/slots.o src/local/cgroup.o src/limits_report.o src/local/quota.o src/stdin.o \
	src/live.o \
	$(COMMON_OBJS)
# The local backend's sandboxes and warm pool (issue 12's split of driver_local.c).
OBJS += src/local/bwrap.o src/local/bgfiles.o src/local/warm.o src/local/warm_client.o
# Retries of queued commands (issue 14, part 5).
OBJS += src/retry.o
OBJS += src/cloud/runners.o
DATA = cloudrun_sandbox--0.1.0.sql cloudrun_sandbox--0.1.0--0.2.0.sql \
	cloudrun_sandbox--0.2.0--0.3.0.sql cloudrun_sandbox--0.3.0--0.4.0.sql \
	cloudrun_sandbox--0.4.0--0.5.0.sql cloudrun_sandbox--0.5.0--0.6.0.sql \
	cloudrun_sandbox--0.6.0--0.7.0.sql cloudrun_sandbox--0.7.0--0.8.0.sql

EXECUTOR = cloudrun-sandbox-executor
# The executor is two programs from one set of sources: the local one, which
# starts fast (jansson only), and the cloud one (libcurl, OpenSSL), which the
# local one hands "cloud ..." invocations to.
EXECUTOR_SRCS = src/executor/executor.c src/executor/command.c src/executor/fileops.c \
	src/executor/background.c src/executor/scrub.c \
	src/common/sbutil.c src/common/protocol.c src/common/frame.c
EXECUTOR_LIBS = -ljansson
EXECUTOR_CLOUD_SRCS = $(EXECUTOR_SRCS) src/executor/cloud.c src/executor/wsync.c src/executor/runner.c \
	src/executor/isolate.c src/common/http.c \
	src/common/gcs.c src/common/oauth.c
EXECUTOR_CLOUD_LIBS = -ljansson -lcurl -lcrypto

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=.

PG_CPPFLAGS = -I$(srcdir)/src -DSB_EXTENSION_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type
# The postgres binary exports a json_object() of its own, which would take the
# place of jansson's; src/common/sbutil.h routes calls to sb_json_object(), and
# test/check_symbols.sh proves no reference to json_object is left.
SHLIB_LINK = -lcurl -ljansson -lcrypto -lseccomp
EXTRA_CLEAN = $(EXECUTOR) $(EXECUTOR)-cloud $(EXECUTOR)-asan results regression.diffs regression.out

# No LLVM bitcode: JIT inlining of this code is not worth a clang dependency.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

EXECUTOR_CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter

all: $(EXECUTOR) $(EXECUTOR)-cloud

$(EXECUTOR): $(EXECUTOR_SRCS) $(wildcard src/executor/*.h src/common/*.h)
	$(CC) $(EXECUTOR_CFLAGS) -o $@ $(EXECUTOR_SRCS) $(EXECUTOR_LIBS)

$(EXECUTOR)-cloud: $(EXECUTOR_CLOUD_SRCS) $(wildcard src/executor/*.h src/common/*.h)
	$(CC) $(EXECUTOR_CFLAGS) -DSB_EXECUTOR_CLOUD -o $@ $(EXECUTOR_CLOUD_SRCS) $(EXECUTOR_CLOUD_LIBS)

# The executor built with AddressSanitizer and UBSan, for the test suite.
$(EXECUTOR)-asan: $(EXECUTOR_CLOUD_SRCS) $(wildcard src/executor/*.h src/common/*.h)
	$(CC) $(EXECUTOR_CFLAGS) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
		-DSB_EXECUTOR_CLOUD -o $@ $(EXECUTOR_CLOUD_SRCS) $(EXECUTOR_CLOUD_LIBS)

install: install-executor

install-executor: $(EXECUTOR) $(EXECUTOR)-cloud
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(EXECUTOR) '$(DESTDIR)$(bindir)/$(EXECUTOR)'
	$(INSTALL_PROGRAM) $(EXECUTOR)-cloud '$(DESTDIR)$(bindir)/$(EXECUTOR)-cloud'

uninstall: uninstall-executor

uninstall-executor:
	rm -f '$(DESTDIR)$(bindir)/$(EXECUTOR)' '$(DESTDIR)$(bindir)/$(EXECUTOR)-cloud'

.PHONY: install-executor uninstall-executor

# PGXS does not track headers; rebuild everything when one changes.
$(OBJS): $(wildcard src/*.h src/common/*.h src/local/*.h src/worker/*.h src/cloud/*.h)
