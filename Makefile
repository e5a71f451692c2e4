# tern: build, guest image, install, demo, tests, benchmarks.
# `make demo` and `make test` work on a fresh Debian 12 machine as root.
SHELL := /bin/bash
PREFIX ?= /usr/local
GUEST_ROOT ?= /var/lib/tern/guest

.PHONY: all deps host-deps node-deps build guest-image install demo test test-unit test-integration typecheck lint format bench soak clean

all: build

host-deps:
	bash scripts/setup-host.sh

node_modules/.package-lock.json: package.json package-lock.json
	# npm ci installs exactly the committed lock file and never rewrites it (a build changes no tracked file)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-deps: node_modules/.package-lock.json

deps: host-deps node-deps

build: node-deps
	node scripts/build.mjs
	gcc -O2 -Wall -Werror -o dist/tern-tapfd helpers/tern-tapfd.c
	gcc -O2 -Wall -Werror -o dist/containerd-shim-tern-v2 helpers/tern-shim-launch.c
	gcc -O2 -Wall -Werror -shared -fPIC -o dist/tern-cow-guard.so helpers/tern-cow-guard.c -ldl
	@mkdir -p build/bin
	@ln -sfn ../../dist/containerd-shim-tern-v2 build/bin/containerd-shim-tern-v2
	@chmod +x dist/shim.js
	@ln -sfn ../../dist/tern.js build/bin/tern
	@chmod +x dist/tern.js

guest-image: build
	AGENT_JS=$(CURDIR)/dist/agent.js OUT_ROOT=$(GUEST_ROOT) bash guest-image/build.sh

install: build
	install -d $(PREFIX)/lib/tern $(PREFIX)/bin
	install -m 0755 dist/shim.js $(PREFIX)/lib/tern/shim.js
	install -m 0644 dist/shim-main.js $(PREFIX)/lib/tern/shim-main.js
	install -m 0644 dist/shim-main.v8cache $(PREFIX)/lib/tern/shim-main.v8cache
	install -m 0755 dist/containerd-shim-tern-v2 $(PREFIX)/lib/tern/containerd-shim-tern-v2
	install -m 0755 dist/tern-tapfd $(PREFIX)/lib/tern/tern-tapfd
	install -m 0644 dist/tern-cow-guard.so $(PREFIX)/lib/tern/tern-cow-guard.so
	ln -sfn $(PREFIX)/lib/tern/containerd-shim-tern-v2 $(PREFIX)/bin/containerd-shim-tern-v2
	install -m 0755 dist/tern.js $(PREFIX)/lib/tern/tern.js
	ln -sfn $(PREFIX)/lib/tern/tern.js $(PREFIX)/bin/tern

demo: deps guest-image install
	bash scripts/demo.sh

typecheck: node-deps
	npx tsc --noEmit

# Biome: the linter and the formatter (biome.json); `make format` rewrites, `lint` only checks.
lint: node-deps
	npx biome ci --colors=off

format: node-deps
	npx biome check --write

test-unit: build
	npx vitest run test/unit

test-integration: guest-image
	npx vitest run test/integration

test: deps guest-image typecheck lint
	npx vitest run

bench: deps guest-image
	npx esbuild bench/start-latency.ts --bundle --platform=node --target=node20 --outfile=dist/bench.js --log-level=warning
	node dist/bench.js
	# As on a node with pods: each tern start joins the running shim process.
	node dist/bench.js --runtimes tern-template,runc,gvisor --beside-pod
	npx esbuild bench/guest-io.ts --bundle --platform=node --target=node20 --outfile=dist/bench-io.js --log-level=warning
	node dist/bench-io.js --variant 'cpu-max=[hypervisor]\ntcg_cpu_model = "max"'
	npx esbuild bench/pod-start.ts --bundle --platform=node --target=node20 --outfile=dist/bench-pod.js --log-level=warning
	node dist/bench-pod.js
	npx esbuild bench/fleet.ts --bundle --platform=node --target=node20 --outfile=dist/bench-fleet.js --log-level=warning
	node dist/bench-fleet.js --ksm
	npx esbuild bench/memory-burst.ts --bundle --platform=node --target=node20 --outfile=dist/bench-memory.js --log-level=warning
	node dist/bench-memory.js

# Load/soak run: 20 tern pods for 10 minutes by default; e.g. make soak SOAK_ARGS="--duration 120"
soak: deps guest-image
	npx esbuild bench/soak.ts --bundle --platform=node --target=node20 --outfile=dist/bench-soak.js --log-level=warning
	node dist/bench-soak.js $(SOAK_ARGS)

clean:
	rm -rf dist build
