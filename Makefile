# Two commands set everything up: `make run` and `make test`. uv is bootstrapped if missing.
SHELL := /bin/bash
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)

# Tests run against the real PostgreSQL and Redis on their standard local ports.
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/hypereal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-deps smoke lint

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(UV)
	$(UV) sync --frozen

run: install
	$(UV) run python -m hypereal.devrun

# What the suite's real parts need beyond Python: Debian's xmlsec1 (the SAML IdP signs with it) and
# chromium (Playwright drives it for the page tests), node's oidc-provider (the OpenID Provider), pinned by
# tests/oidc_provider/package-lock.json, and the real clients the client tests drive (Claude Code, Codex CLI,
# Gemini CLI, the Vercel AI SDK), pinned by tests/clients/package-lock.json.
test-deps: tests/oidc_provider/node_modules/.package-lock.json tests/clients/node_modules/.package-lock.json
	@command -v xmlsec1 >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq xmlsec1 chromium; }

tests/oidc_provider/node_modules/.package-lock.json: tests/oidc_provider/package-lock.json
	cd tests/oidc_provider && npm ci --no-audit --no-fund --silent

# The AI SDK declares node >= 22 yet runs on Debian's node 20 (npm only warns; tests/test_wire_formats.py proves it).
tests/clients/node_modules/.package-lock.json: tests/clients/package-lock.json
	cd tests/clients && npm ci --no-audit --no-fund --silent

test: install test-deps
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(UV) run pytest $(PYTEST_ARGS)

smoke: install
	$(UV) run python tests/smoke.py

# Load benchmark (bench/README.md): one gateway process on one core against a 0 ms fake upstream,
# on PostgreSQL + Redis (database hypereal_bench, Redis db 14); installs wrk with apt-get if missing.
.PHONY: bench
bench: install
	$(UV) run python bench/run.py
