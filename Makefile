# The course's build and test entry points. `make help` lists them.
#
# Every numbered directory builds on its own (make -C 01-poll); this Makefile only drives them.
# Build output goes to build/<stage-dir>/ (build-address-undefined/<stage-dir>/ with
# SANITIZE=address,undefined, build-clang/<stage-dir>/ with CXX=clang++), never the sources.

# Test targets must not run side by side: they start servers, open thousands of sockets and
# measure CPU time. Builds still run in parallel under -j, inside each stage's own make.
.NOTPARALLEL:

SHELL := /bin/bash
STAGE_DIRS := $(sort $(wildcard 0[1-6]-*))
STAGE_NUMBERS := $(patsubst 0%,%,$(foreach d,$(STAGE_DIRS),$(firstword $(subst -, ,$d))))
HIGHEST_STAGE := $(lastword $(STAGE_NUMBERS))
stage_dir = $(or $(wildcard 0$(1)-*),$(error there is no stage $(1) yet: stages here are $(STAGE_NUMBERS)))

comma := ,
ifeq ($(findstring clang,$(notdir $(CXX))),clang)
  TREE_SUFFIX := -clang
endif
ifneq ($(SANITIZE),)
  TREE_SUFFIX := $(TREE_SUFFIX)-$(subst $(comma),-,$(SANITIZE))
  # ASan's default quarantine (256 MiB) would look like unbounded memory to the tests, and
  # sanitized code is several times slower, so the suite's deadlines are scaled up.
  export ASAN_OPTIONS := quarantine_size_mb=16:halt_on_error=1:abort_on_error=0
  export UBSAN_OPTIONS := halt_on_error=1:print_stacktrace=1
  # SANITIZE=thread (stages 5 and 6, the ones with threads): a data race ends the server, so
  # the test that drove it fails instead of a report scrolling by.
  export TSAN_OPTIONS := halt_on_error=1:second_deadlock_stack=1
  export TEST_TIME_SCALE ?= 4
endif
BUILD_ROOT := build$(TREE_SUFFIX)
STAGE_MAKE = $(MAKE) --no-print-directory -C $(call stage_dir,$(1)) BUILD_ROOT=$(abspath $(BUILD_ROOT))
EXAMPLES_MAKE = $(MAKE) --no-print-directory -C examples BUILD_ROOT=$(abspath $(BUILD_ROOT))
ECHOLOAD_MAKE = $(MAKE) --no-print-directory -C tools/echoload BUILD_ROOT=$(abspath $(BUILD_ROOT))

# Only the unit tests need doctest's header. Asked of the compiler, as each stage's Makefile
# does, so that CXX=clang++ and -I in CXXFLAGS count; DOCTEST_HEADER=doctest/nope.h plays a
# machine without doctest.
DOCTEST_HEADER ?= doctest/doctest.h
HAS_DOCTEST = $(CXX) $(CXXFLAGS) -x c++ -E -include $(DOCTEST_HEADER) /dev/null \
    -o /dev/null 2>/dev/null
# Stage 6 alone needs liburing's header (and library) to build, asked the same way, as its own
# Makefile does; LIBURING_HEADER=liburing/nope.h plays a machine without liburing.
LIBURING_HEADER ?= liburing.h
HAS_LIBURING = $(CXX) $(CXXFLAGS) -x c++ -E -include $(LIBURING_HEADER) /dev/null \
    -o /dev/null 2>/dev/null

# The interpreter that can `import pytest`: Debian's python3-pytest is installed for
# /usr/bin/python3, and a python3 earlier on PATH (pyenv, conda, a venv) may lack it.
PYTHON ?= $(shell for p in python3 /usr/bin/python3; do \
    if command -v $$p >/dev/null 2>&1 && $$p -c 'import pytest, pytest_timeout' 2>/dev/null; \
    then command -v $$p; break; fi; done)
PYTEST = $(PYTHON) -m pytest tests --stage $(1) --server $(BUILD_ROOT)/$(call stage_dir,$(1))/server \
    $(if $(QUICK),-m "not slow")

DEPS := doctest-dev python3-pytest python3-pytest-timeout netcat-openbsd liburing-dev
BENCH_DEPS := libboost-dev libuv1-dev nodejs python3-matplotlib strace
# bench/run.py needs only the standard library; its plots need Debian's python3-matplotlib,
# installed for /usr/bin/python3 (a python3 earlier on PATH may lack it, as with pytest).
BENCH_PYTHON ?= $(or $(shell for p in python3 /usr/bin/python3; do \
    if command -v $$p >/dev/null 2>&1 && $$p -c 'import matplotlib' 2>/dev/null; \
    then command -v $$p; break; fi; done),$(PYTHON),/usr/bin/python3)
BENCH_ARGS ?=
PORT ?= 7000
HOST ?= 127.0.0.1
# make run without STAGE= starts the highest stage; where that is stage 6 and it cannot run
# here, stage 5 instead, saying why. STAGE=N picks a stage, and then nothing else is tried.
RUN_FALLS_BACK := $(if $(STAGE),,$(filter 6,$(HIGHEST_STAGE)))
STAGE ?= $(HIGHEST_STAGE)

# Stage 6 needs liburing to build and io_uring to run, which a kernel may lack or forbid (as
# many containers do). Where either is missing, make all, make test and make unit-tests say so
# and go on with the other stages, and make run starts stage 5; with CI=true a stage 6 that
# cannot run fails instead. tools/stage6-probe.sh starts the server once to find out.
STAGE6_DIR := $(filter 06-%,$(STAGE_DIRS))
NO_LIBURING := liburing is not installed ($(LIBURING_HEADER) not found): make deps installs liburing-dev
PROBE_SECONDS := $(if $(SANITIZE),40,10)
# Shell, for a recipe: sets why to the reason stage 6 cannot run here, or to nothing where it
# can. A stage 6 that fails to start for any other reason (a crash, no `listening on` in time)
# is broken, not unsupported: the recipe fails with what the probe saw.
STAGE6_WHY = if ! $(HAS_LIBURING); then why="$(NO_LIBURING)"; \
    else why=$$(tools/stage6-probe.sh $(BUILD_ROOT)/$(STAGE6_DIR)/server $(PROBE_SECONDS)) \
      || [ $$? = 3 ] || exit 1; fi
# Under CI, as the suite reads it (tests/conftest.py): CI set to anything but empty, 0, false
# or no. IN_CI is "true" there, empty elsewhere.
IN_CI := $(if $(filter-out 0 false no,$(shell printf '%s' '$(CI)' | tr 'A-Z' 'a-z')),true)
# Shell: says that stage 6 was not run and why; fails under CI.
STAGE6_NOT_RUN = if [ "$(IN_CI)" = true ]; then \
      echo "error: stage 6 not run: $$why (under CI every stage must run)" >&2; exit 1; fi; \
    echo "stage 6 not run: $$why"

.PHONY: all help deps check-deps run test unit-tests tools-test format-check clean
.PHONY: examples examples-check labs labs-check labs-grade compile-commands
.PHONY: bench plots peers bench-deps echoload-binary

all: $(patsubst stage-6,stage-6-if-possible,$(addprefix stage-,$(STAGE_NUMBERS)))

help:
ifeq ($(RUN_FALLS_BACK),6)
	@echo "make run            build and start stage 6 on $(HOST):$(PORT), or stage 5 where io_uring"
	@echo "                    cannot run, saying why (STAGE=N picks a stage)"
else
	@echo "make run            build and start stage $(STAGE) on $(HOST):$(PORT) (STAGE=N picks another)"
endif
	@echo "make test           everything: deps if missing, every stage's unit tests and the shared suite,"
	@echo "                    the tools' tests, the suite's self-test, the examples, the labs' check,"
	@echo "                    the docs check, and the site where its tools are installed"
	@echo "make stage-N        build stage N into $(BUILD_ROOT)/<stage-dir>/: its server, and its unit tests"
	@echo "                    where doctest is installed (make run builds the server alone); stage 6"
	@echo "                    needs liburing-dev as well"
	@echo "make test-N         unit tests of stage N, then the shared suite against it (QUICK=1: no slow tests);"
	@echo "                    stage 6 where io_uring can run, a note otherwise (CI=true: a failure)"
	@echo "make diff-N         what stage N changed from stage N-1"
	@echo "make unit-tests     build every stage and run its unit tests only"
	@echo "make selftest       prove the suite can fail: each bug mode of tests/broken_server"
	@echo "make examples       build the chapters' example programs (examples/*.cpp) into"
	@echo "                    $(BUILD_ROOT)/examples/"
	@echo "make examples-check each example does what its chapter says: a server passes the steps of"
	@echo "                    tests/milestones.py it is said to pass and fails the next; others exit 0"
	@echo "make docs-check     every snippet in the docs matches its source; every link resolves"
	@echo "make lab-N          start lab N: write stage N yourself in lab/0N-<name>/ (docs/labs.md)"
	@echo "make check-lab-N    grade lab N milestone by milestone (M=k: milestone k only; SERVER=path:"
	@echo "                    grade a binary; LAB=0N-<name>: grade that directory; QUICK=1)"
	@echo "make labs           every lab's workspace and last grade (grades nothing)"
	@echo "make labs-check     the labs' seeds and structural checks behave as the guide says"
	@echo "make labs-grade     every reference stage passes every milestone of its lab (slow)"
	@echo "make compile-commands  compile_commands.json in each stage directory, for clangd"
	@echo "make site           the course as a website, in $(SITE_DIR)/ (make serve-docs serves it on"
	@echo "                    127.0.0.1:$(SITE_PORT)); make site-check opens each page in headless Chromium"
	@echo "make site-deps      install what the site needs: MkDocs, Material, Chromium, Mermaid from npm"
	@echo "make echoload       build the load generator (and its unit tests where doctest is installed)"
	@echo "                    into $(BUILD_ROOT)/tools/echoload/"
	@echo "make deps           install the Debian packages the tests need"
	@echo "make format-check   clang-format finds nothing to change"
	@echo "make bench          build every stage, echoload and the peers, run the benchmark (about"
	@echo "                    10 minutes; BENCH_ARGS=--quick: a smoke test), print its tables, plot"
	@echo "make plots          redraw docs/img/bench-*.svg from docs/data/bench.json"
	@echo "make peers          build the benchmark's peer servers (bench/peers) that can be built here"
	@echo "make bench-deps     install the Debian packages the benchmark and its peers need"
	@echo "make frame-sizes    what one idle stage-4 connection allocates: its coroutine frames"
	@echo "make clean          remove every build tree"
	@echo "Options: SANITIZE=address,undefined  CXX=clang++  QUICK=1  STAGE=N  PORT=N  CI=true"
	@echo "Stages here: $(STAGE_DIRS)"

# Pattern rules, not .PHONY ones (make skips pattern rules for phony targets): FORCE makes
# them run every time, and each stage's own make decides what is out of date.
FORCE:
stage-%: FORCE
	+@$(call STAGE_MAKE,$*) all
# The server alone, without the unit tests: what make run and make bench need.
server-%: FORCE
	+@$(call STAGE_MAKE,$*) server
# make all and make bench: stage 6 where liburing is installed, a note otherwise.
stage-6-if-possible server-6-if-possible: %-6-if-possible: FORCE
	+@if $(HAS_LIBURING); then $(call STAGE_MAKE,6) $(if $(filter stage,$*),all,server); \
	else echo "stage 6 not built: $(NO_LIBURING)"; fi

# Installs the test tools. Needs root (or sudo): otherwise prints the command and stops.
deps:
	@set -e; cmd="apt-get update && apt-get install -y --no-install-recommends $(DEPS)"; \
	if [ "$$(id -u)" = 0 ]; then bash -c "export DEBIAN_FRONTEND=noninteractive; $$cmd"; \
	elif sudo -n true 2>/dev/null; then sudo bash -c "export DEBIAN_FRONTEND=noninteractive; $$cmd"; \
	else echo "make deps needs root. Run:"; echo "  sudo sh -c '$$cmd'"; exit 1; fi

# Runs `make deps` only when something is missing, so `make test` works on a fresh machine.
# Without liburing alone, a failed make deps leaves stage 6 out instead (not where CI=true).
check-deps:
	@missing=""; \
	$(HAS_DOCTEST) || missing="$$missing doctest-dev"; \
	[ -n "$(PYTHON)" ] || missing="$$missing python3-pytest python3-pytest-timeout"; \
	command -v nc >/dev/null 2>&1 || missing="$$missing netcat-openbsd"; \
	$(if $(STAGE6_DIR),$(HAS_LIBURING) || missing="$$missing liburing-dev";) \
	if [ -n "$$missing" ]; then echo "missing:$$missing; running make deps"; \
	  $(MAKE) --no-print-directory deps || { [ "$$missing" = " liburing-dev" ] && [ "$(IN_CI)" != true ] \
	    && echo "make deps failed: going on without stage 6, which needs liburing-dev"; }; fi

# Builds the server only, so it needs nothing but g++ and make (and liburing for stage 6): no
# doctest, no python.
ifeq ($(RUN_FALLS_BACK),6)
# Stage 6 where it can run here, otherwise stage 5; make run STAGE=N, below, then starts it.
run:
	+@if $(HAS_LIBURING); then $(call STAGE_MAKE,6) server || exit; fi; $(STAGE6_WHY); \
	if [ -z "$$why" ]; then stage=6; echo "make run: stage 6 (io_uring)"; \
	else stage=5; echo "make run: stage 6 cannot run here: $$why; starting stage 5"; fi; \
	exec $(MAKE) --no-print-directory run STAGE=$$stage
else
run: server-$(STAGE)
	exec $(BUILD_ROOT)/$(call stage_dir,$(STAGE))/server --host $(HOST) --port $(PORT)
endif

# Shell: the unit tests of stage $(1), then the shared suite against it, each command shown.
STAGE_TESTS = set -e; echo "=== stage $(1): unit tests ==="; \
    unit_tests=$(BUILD_ROOT)/$(call stage_dir,$(1))/unit_tests; echo "$$unit_tests"; $$unit_tests; \
    echo "=== stage $(1): shared suite ==="; echo '$(call PYTEST,$(1))'; $(call PYTEST,$(1))

# PYTHON is expanded when this recipe runs, after check-deps may have installed pytest.
test-%: check-deps stage-% FORCE
	$(if $(PYTHON),,$(error no python3 here can import pytest and pytest_timeout: run make deps))
	@$(call STAGE_TESTS,$*)

# Stage 6 as test-% tests the others, where it can run here; otherwise a note (CI=true: a failure).
test-6: check-deps stage-6-if-possible FORCE
	$(if $(PYTHON),,$(error no python3 here can import pytest and pytest_timeout: run make deps))
	@$(STAGE6_WHY); if [ -n "$$why" ]; then $(STAGE6_NOT_RUN); exit 0; fi; $(call STAGE_TESTS,6)

unit-tests: check-deps all echoload
	@set -e; for d in $(STAGE_DIRS) tools/echoload; do \
	  if [ "$$d" = "$(STAGE6_DIR)" ]; then \
	    $(STAGE6_WHY); if [ -n "$$why" ]; then $(STAGE6_NOT_RUN); continue; fi; fi; \
	  echo "=== $$d: unit tests ==="; $(BUILD_ROOT)/$$d/unit_tests; done

# Shell: sets stages to what make test ran, for its last line.
TESTED_STAGES = stages="every stage"; $(if $(STAGE6_DIR),$(STAGE6_WHY); \
    [ -z "$$why" ] || stages="every stage but 6 (not run: $$why)")

test: check-deps all
	@set -e; for n in $(STAGE_NUMBERS); do $(MAKE) --no-print-directory test-$$n; done
	@$(MAKE) --no-print-directory tools-test
ifeq ($(TREE_SUFFIX),)
	@$(MAKE) --no-print-directory selftest examples-check labs-check docs-check site-if-installed
	@$(TESTED_STAGES); echo "make test: $$stages, the tools, the self-test, the examples, the labs' check and the docs check passed"
else
	@$(TESTED_STAGES); echo "make test: $$stages and the tools passed in $(BUILD_ROOT)/ (the self-test, the"
	@echo "examples check and the docs check run in the plain build only: they test the suite,"
	@echo "the chapters' claims and the docs, not the build)"
endif

# The load generator, and its unit tests (they include runs against tiny in-process servers)
# where doctest is installed.
echoload: FORCE
	+@$(ECHOLOAD_MAKE) all
# The load generator alone, for make bench.
echoload-binary:
	+@$(ECHOLOAD_MAKE) echoload

tools-test: check-deps echoload
	@echo "=== tools: echoload unit tests ==="
	$(BUILD_ROOT)/tools/echoload/unit_tests
	@echo "=== tools: snippet and link checker tests ==="
	$(PYTHON) -m pytest -q -p no:cacheprovider tools/tests

# The suite's self-test: each bug mode of tests/broken_server must fail the tests aimed at it.
BROKEN_SERVER := $(BUILD_ROOT)/tests/broken_server/broken_server
selftest: check-deps FORCE
	+@$(MAKE) --no-print-directory -C tests/broken_server BUILD_ROOT=$(abspath $(BUILD_ROOT))
	@echo "=== self-test: the suite against tests/broken_server, one bug at a time ==="
	$(PYTHON) tests/selftest.py --server $(BROKEN_SERVER)

# The chapters' example programs, one file each (examples/): built with the stages' flags, but
# never part of a stage (no stage's build and no make diff-N looks there).
examples: FORCE
	+@$(EXAMPLES_MAKE) all

# Each example does what its chapter says (tools/examples.py): the servers pass the steps of
# tests/milestones.py that the chapters say they pass and fail the next one, slow tests left
# out; every other example is a self-checking program that must exit 0.
examples-check: check-deps examples
	@echo "=== examples: each does what its chapter says ==="
	$(if $(PYTHON),,$(error no python3 here can import pytest and pytest_timeout: run make deps))
	$(PYTHON) tools/examples.py grade --build-root $(BUILD_ROOT)

# Every code snippet in README.md and docs/ still matches the source it was taken from, every
# relative link and anchor there leads somewhere, chapter 01's table of steps is
# tests/milestones.py's, and no chapter runs over 7,000 words of prose.
docs-check: FORCE
	@echo "=== docs: snippets match their sources ==="
	$(PYTHON) tools/snippets.py check
	@echo "=== docs: relative links and anchors resolve ==="
	$(PYTHON) tools/links.py
	@echo "=== docs: chapter 01's table of steps matches tests/milestones.py ==="
	$(PYTHON) tools/examples.py check-chapter
	@echo "=== docs: no chapter over 7,000 words of prose (outside code blocks and comments) ==="
	$(PYTHON) tools/words.py
	@echo "=== docs: the labs' milestones point to real sections; docs/labs.md's tables match ==="
	$(PYTHON) tools/lab.py check-docs

# The labs (docs/labs.md): the learner writes stage N in lab/0N-<name>/, a git repository of
# their own that no target removes or overwrites; tools/lab.py grades it by the milestones of
# tests/milestones.py. The standard library's python is enough to start one.
LAB_PYTHON = $(or $(PYTHON),python3)
lab-%: FORCE
	@$(LAB_PYTHON) tools/lab.py new $*
check-lab-%: check-deps FORCE
	$(if $(PYTHON),,$(error no python3 here can import pytest and pytest_timeout: run make deps))
	@$(PYTHON) tools/lab.py check $* $(if $(M),--milestone $(M)) $(if $(SERVER),--server $(SERVER)) \
	    $(if $(LAB),--lab $(LAB)) $(if $(QUICK),--quick)
labs:
	@$(LAB_PYTHON) tools/lab.py status
# Quick (part of make test): each lab's seed fails where the guide says, and the structural
# checks tell the reference stages apart.
labs-check: check-deps all
	@echo "=== labs: the seeds and the structural checks behave as the labs guide says ==="
	$(PYTHON) tools/lab.py selfcheck
# Slow (CI): every reference stage passes every milestone of its lab, slow tests included.
labs-grade: check-deps
	$(PYTHON) tools/lab.py grade-references
compile-commands:
	@set -e; for d in $(STAGE_DIRS); do \
	  $(MAKE) --no-print-directory -C $$d BUILD_ROOT=$(abspath $(BUILD_ROOT)) compile_commands.json; done

# The course as a website (mkdocs.yml): MkDocs and the Material theme from Debian's packages,
# Mermaid 9 from npm (tools/site/package.json), checked page by page in Debian's headless
# Chromium (tools/site/check.py). Not needed to read the course: GitHub renders docs/ as it is.
SITE_DIR := build/site
SITE_PORT ?= 8000
SITE_DEPS := mkdocs mkdocs-material chromium chromium-driver python3-selenium
SITE_SEARCHES := EPOLLRDHUP=03-epoll-edge.md backpressure=01-poll.md co_await=04-coroutines.md
# Debian's mkdocs and selenium are installed for /usr/bin/python3, as pytest is.
SITE_PYTHON ?= $(or $(shell for p in python3 /usr/bin/python3; do \
    if command -v $$p >/dev/null 2>&1 && $$p -c 'import mkdocs, selenium' 2>/dev/null; \
    then command -v $$p; break; fi; done),/usr/bin/python3)
HAS_SITE_TOOLS = $(SITE_PYTHON) -c 'import sys, selenium, mkdocs.utils; \
    sys.exit("material" not in mkdocs.utils.get_theme_names())' 2>/dev/null \
    && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && [ -f $(MERMAID_JS) ]
.PHONY: site site-check site-deps serve-docs site-if-installed

# Mermaid, pinned in tools/site/package-lock.json, fetched once per clone (npm gives its files
# the package's old mtimes, so the lock file cannot be a prerequisite: make site-deps refreshes).
MERMAID_JS := tools/site/node_modules/mermaid/dist/mermaid.min.js
$(MERMAID_JS):
	@command -v npm >/dev/null 2>&1 || { echo "error: the site needs Mermaid from npm, and npm is not installed: make site-deps"; exit 1; }
	cd tools/site && npm ci --ignore-scripts --no-audit --no-fund

site: $(MERMAID_JS)
	$(SITE_PYTHON) -m mkdocs build --strict --quiet
	@echo "site: the course is in $(SITE_DIR)/ (make serve-docs serves it)"

site-check: site
	$(SITE_PYTHON) tools/site/check.py --site $(SITE_DIR) --shots build/site-shots \
	    $(addprefix --search ,$(SITE_SEARCHES))

serve-docs: site
	@echo "serving the course at http://127.0.0.1:$(SITE_PORT)/ (Ctrl-C stops it)"
	@$(SITE_PYTHON) -m http.server -b 127.0.0.1 -d $(SITE_DIR) $(SITE_PORT)

# Debian's npm only where no npm is installed yet (Node.js from elsewhere brings its own).
site-deps:
	@$(MAKE) --no-print-directory deps \
	    DEPS="$(SITE_DEPS) $$(command -v npm >/dev/null 2>&1 || echo npm)"
	cd tools/site && npm ci --ignore-scripts --no-audit --no-fund

# For make test: the site and its check where their tools are installed, a note otherwise.
site-if-installed:
	@if $(HAS_SITE_TOOLS); then $(MAKE) --no-print-directory site-check; \
	else echo "make test: the site was not built nor checked: make site-deps installs its tools"; fi

diff-%: FORCE
	@prev=$$(ls -d 0$$(($* - 1))-* 2>/dev/null); \
	[ -n "$$prev" ] || { echo "error: diff-N takes N from 2 to $(HIGHEST_STAGE)"; exit 2; }; \
	diff -ruN --exclude='*.d' --exclude=compile_commands.json $$prev $(call stage_dir,$*); [ $$? -le 1 ]

FORMATTED_DIRS := $(STAGE_DIRS) examples tools/echoload tests/broken_server bench bench/peers
FORMATTED := $(wildcard $(addsuffix /*.cpp,$(FORMATTED_DIRS)) $(addsuffix /*.hpp,$(FORMATTED_DIRS)) \
    bench/peers/*.c)
format-check:
	@clang-format --dry-run --Werror $(FORMATTED) && echo "format-check: $(words $(FORMATTED)) files clean"

clean:
	rm -rf build build-*

# The benchmark (docs/benchmarks.md): figures, not tests, so never part of `make test`. It
# measures the plain optimized build, in build/; its peers are built when their packages are
# present and skipped with a note otherwise.
peers:
	+@$(MAKE) --no-print-directory -C bench/peers BUILD_ROOT=$(abspath $(BUILD_ROOT))

ifeq ($(TREE_SUFFIX),)
bench: $(patsubst server-6,server-6-if-possible,$(addprefix server-,$(STAGE_NUMBERS))) \
    echoload-binary peers
	$(BENCH_PYTHON) bench/run.py $(BENCH_ARGS)
	@$(MAKE) --no-print-directory plots
else
bench:
	$(error make bench measures the plain build in build/: run it without CXX= and SANITIZE=)
endif

# The coroutine frames of one idle stage-4 connection (docs/04-coroutines.md, "What it costs").
FRAME_SIZES := $(BUILD_ROOT)/bench/frame_sizes
frame-sizes: FORCE
	@mkdir -p $(dir $(FRAME_SIZES))
	$(CXX) -std=c++20 -O2 -I04-coroutines bench/frame_sizes.cpp $(filter-out %/main.cpp %/test_main.cpp %_test.cpp,$(wildcard 04-coroutines/*.cpp)) -o $(FRAME_SIZES)
	$(FRAME_SIZES)

plots:
	$(BENCH_PYTHON) bench/run.py plot

# Like make deps, for the benchmark's packages.
bench-deps:
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS)"
