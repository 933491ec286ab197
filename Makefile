# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Offline first: `make lab` in one terminal, `make run` in another; no root, no internet.
LAB_PORT ?= 5353
LAB_HINTS ?= lab.hints
# The lab signs its zones and writes the root's DS here: `make run` validates with it.
LAB_ANCHOR ?= $(LAB_HINTS:.hints=.anchor)
ROOT_HINTS ?= $(LAB_HINTS)
LISTEN ?= 127.0.0.1:5300
# The lab writes its port into its hints file ("; The lab's servers listen on port N."):
# `make run` uses that, so `make lab LAB_PORT=N` needs nothing more on `make run`.
LAB_STATED_PORT = $(shell sed -n 's/^; The lab.s servers listen on port \([0-9][0-9]*\)\..*/\1/p' $(LAB_HINTS) 2>/dev/null)
UPSTREAM_PORT ?= $(or $(LAB_STATED_PORT),$(LAB_PORT))
# Extra options for `resolver serve`, e.g. make run ARGS="--prefetch --verbose"
ARGS ?=

.PHONY: run run-internet test lab lint unit integration replay clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

## run: the resolver on $(LISTEN), resolving from the lab (start `make lab` first)
run: $(STAMP)
	@test -f $(ROOT_HINTS) || { echo "$(ROOT_HINTS) is missing: start the lab first, in another terminal: make lab" >&2; exit 1; }
	$(BIN)/resolver serve --listen $(LISTEN) --root-hints $(ROOT_HINTS) --upstream-port $(UPSTREAM_PORT) \
	  $$(if [ "$(ROOT_HINTS)" = "$(LAB_HINTS)" ] && [ -f $(LAB_ANCHOR) ]; then echo --trust-anchor-file $(LAB_ANCHOR); fi) $(ARGS)

## run-internet: the resolver from the real root servers (sends queries to the internet)
run-internet: $(STAMP)
	$(BIN)/resolver serve --listen $(LISTEN) --root-hints root.hints --upstream-port 53 $(ARGS)

## lab: the offline mini internet of authoritative servers on 127.x.y.z, port $(LAB_PORT)
lab: $(STAMP)
	$(BIN)/resolver lab --hints-file $(LAB_HINTS) --port $(LAB_PORT)

## test: every test (unit, replay, integration with real dig on loopback)
test: $(STAMP)
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

replay: $(STAMP)
	$(BIN)/pytest -q tests/replay

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

lint: $(STAMP)
	$(BIN)/ruff check resolver tests
	$(BIN)/mypy resolver

## bench-cache: bytes per cached RRset and microseconds per cached answer (prints figures)
.PHONY: bench-cache
bench-cache: $(STAMP)
	$(BIN)/python bench/cache_bench.py

## bench-exchange: CPU µs per upstream UDP exchange beside the floor of its socket work (prints figures)
.PHONY: bench-exchange
bench-exchange: $(STAMP)
	timeout 300 $(BIN)/python bench/exchange_cost.py

## bench-cachedb: one answer from memory, from Redis and from upstream; Redis killed under load (prints figures)
.PHONY: bench-cachedb
bench-cachedb: $(STAMP)
	timeout 180 $(BIN)/python bench/cachedb_bench.py

## bench-gc: full garbage-collector pauses with a 100,000-entry cache, before and after gc.freeze()
.PHONY: bench-gc
bench-gc: $(STAMP)
	timeout 120 $(BIN)/python bench/gc_pause_bench.py

## bench-encrypted: queries/s and CPU µs per query over UDP, TCP, DoT and DoH, ours beside Unbound (dnsperf; about 40 s)
.PHONY: bench-encrypted
bench-encrypted: $(STAMP)
	timeout --kill-after=30 240 nice -n 10 $(BIN)/python bench/encrypted_load.py

## bench-hostile: one figure per hostile-server case of issue 20 (docs/reliability.md), about 1 minute
.PHONY: bench-hostile
bench-hostile: $(STAMP)
	timeout 300 $(BIN)/python bench/hostile.py

## soak: the mixed load of issue 20 at 70% of full speed, a table per minute (DURATION=180 seconds)
.PHONY: soak
DURATION ?= 180
soak: $(STAMP)
	DURATION=$(DURATION) timeout $$(( $(DURATION) + 120 )) nice -n 10 $(BIN)/python bench/soak.py

## bench: our resolver beside Unbound on an NSD lab with dnsperf, then the same lab signed,
## validating and not, then the mixed workload of bench-mixed (about 8 minutes, 1 more the
## first time: signing; needs root for apt)
.PHONY: bench
bench: $(STAMP)
	@for tool in nsd nsd-control dnsperf unbound dig taskset ldns-signzone; do \
	  command -v $$tool >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends nsd dnsperf unbound bind9-dnsutils util-linux ldnsutils >/dev/null; fi
	timeout --signal=TERM --kill-after=30 480 $(BIN)/python bench/run.py
	# The signed lab uses the same 127.53.*.* addresses, so it runs after run.py has stopped
	# the unsigned one; its own cap (signing about 40 s, four peers about 30 s each).
	timeout --signal=TERM --kill-after=30 330 $(BIN)/python bench/dnssec_bench.py
	$(BIN)/python bench/dnssec_verify_bench.py
	timeout --signal=TERM --kill-after=30 300 $(BIN)/python bench/mixed_load.py

## bench-mixed: a Zipf query stream with new, NXDOMAIN, slow and dead names at rising rates,
## ours beside Unbound, until 1% is lost: the rate each holds and its p99 (about 3 minutes)
.PHONY: bench-mixed
bench-mixed: $(STAMP)
	timeout --signal=TERM --kill-after=30 300 $(BIN)/python bench/mixed_load.py

## bench-ttl: 5,000 names three times against ours and Unbound on the NSD lab: TTLs that grow, TTLs beside Unbound's (about 1 minute)
.PHONY: bench-ttl
bench-ttl: $(STAMP)
	timeout --signal=TERM --kill-after=30 240 $(BIN)/python bench/ttl_differential.py

## fuzz: coverage-guided fuzzing of the message decoder (FUZZ_SECONDS, default 300; bounded)
FUZZ_SECONDS ?= 300
.PHONY: fuzz
fuzz: $(STAMP)
	RESOLVER_FUZZ_SECONDS=$(FUZZ_SECONDS) timeout --kill-after=30 $$(( $(FUZZ_SECONDS) + 120 )) \
	  $(BIN)/pytest -q tests/unit/test_wire_hostile.py -k coverage_guided

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
