# tether — the two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A demo-only secret so the example config starts; set your own in production.
export TETHER_COOKIE_SECRET ?= demo-only-cookie-secret-change-me-0123456789

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_BACKENDS := web-1 127.0.0.1:9001 web-2 127.0.0.1:9002 web-3 127.0.0.1:9003

.PHONY: help deps build run test fmt lint bench bench-route bench-sessions bench-state soak

help:
	@echo "make run    build tether, start three demo backends and tether on conf/example.yaml"
	@echo "make test   format check, clippy -D warnings, unit and end-to-end tests"
	@echo "make soak   two minutes of load through kills, drains and reloads (not part of make test)"
	@echo "make bench  tether vs nginx, HAProxy and bare Pingora on one core, plus scaling (a few minutes)"

# Pingora needs cmake, pkg-config and OpenSSL's headers to build; the tests need the rest
# (pebble: the ACME directory of the ACME tests, with pebble-challtestsrv); install what is missing.
deps:
	@missing=""; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists openssl 2>/dev/null || missing="$$missing libssl-dev"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v pebble >/dev/null || missing="$$missing pebble"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	cargo build --bin tether --example demo_backend

run: build
	@./target/debug/examples/demo_backend $(DEMO_BACKENDS) & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT; \
	echo; \
	echo "tether on http://127.0.0.1:8080  (Ctrl-C stops it and the demo backends)"; \
	echo "try:  curl -i -c /tmp/tether.jar -b /tmp/tether.jar http://127.0.0.1:8080/"; \
	echo; \
	./target/debug/tether --config conf/example.yaml

# Proxy CPU per request against nginx, HAProxy and bare Pingora, then scaling, then what an idle
# connection and a header session cost in memory (bench/README.md).
# Installs wrk, nginx-light, haproxy and nghttp2-client when missing; loopback only; ends what it
# started. TLS termination, new handshakes, HTTP/2 and the upstream pool are rows too (bench/tls.sh).
bench: deps
	bash bench/proxy.sh
	bash bench/memory.sh

# Criterion micro-benchmarks of the routing core: cookie verify + pick, in ns per request.
bench-route:
	cargo bench --bench route

# Header-session memory and lookup cost (bench/README.md).
bench-sessions: deps
	cargo run --release --example bench_sessions

# Header affinity with the embedded store vs Redis: CPU/request, p99, Redis round trips (bench/README.md).
bench-state: deps
	cargo build --release --bin tether
	cargo run --release --example bench_state

# About two minutes of load with endpoint kills, drains and reloads; prints its report.
soak: deps
	cargo test --release --test e2e soak:: -- --ignored --nocapture

fmt:
	cargo fmt

lint: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: lint
	cargo test
