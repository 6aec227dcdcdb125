# The two commands of this repository: `make run` (a sandbox under ./var) and
# `make test` (lint and the whole suite). Both install what is missing first.
# Meant for Debian 12, as root: the sandbox runs a private Postfix.

SHELL := /bin/bash
# The repository's top-level milter/ would shadow pymilter's `milter` module
# for any Python started here with the checkout on sys.path.
export PYTHONSAFEPATH := 1

VENV := .venv
E2A := $(VENV)/bin/e2a
SANDBOX := var
# What the sandbox needs from Debian (make run): the servers it runs and what
# building pymilter in the virtualenv takes.
RUN_PACKAGES := postgresql postfix dnsmasq-base swaks libmilter-dev \
                python3-venv python3-dev gcc make
# What only the tests need on top (make test, CI): the headless browser that
# drives the magic-link pages and the dashboard (tests/system/test_hitl_browser.py,
# test_dashboard_browser.py), what boots a Debian 12 with systemd for the
# package (tests/system/test_systemd.py), and `ip netns` for the second host
# of tests/system/test_two_hosts.py.
TEST_PACKAGES := chromium chromium-driver debootstrap systemd-container iproute2

.PHONY: run stop status test lint deps test-deps venv deb screenshots

run: deps venv
	$(E2A) dev up --root $(SANDBOX)

stop:
	@if [ -x $(E2A) ]; then $(E2A) dev down --root $(SANDBOX); \
	else echo "no virtualenv: nothing was started"; fi

status: venv
	$(E2A) dev status --root $(SANDBOX)

test: test-deps venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: venv
	$(VENV)/bin/ruff check .

# The dashboard's screenshots in docs/ (the README shows them): its browser
# test, through the sandbox, saves what the browser shows on the way.
screenshots: test-deps venv
	E2A_SCREENSHOTS=$(CURDIR)/docs $(VENV)/bin/pytest -q tests/system/test_dashboard_browser.py

# The Debian package, into dist/ (build dependencies installed by apt if missing).
deb:
	.ci/build-deb dist

# apt only when something is missing, so a ready machine needs no network.
# The debconf answer keeps the postfix package from configuring (and
# starting) a system Postfix: the sandbox runs its own instance.
deps: PACKAGES = $(RUN_PACKAGES)
test-deps: PACKAGES = $(RUN_PACKAGES) $(TEST_PACKAGES)
deps test-deps:
	@missing=$$(for pkg in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$pkg 2>/dev/null | grep -q '^install ok installed$$' \
	    || echo $$pkg; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "missing Debian packages:" $$missing "- run 'make $@' as root"; exit 1; fi; \
	    echo "installing Debian packages:" $$missing; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	        --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# Redone only when the packaging changes.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || /usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	# The developer sandbox (devtools/sandbox) is not in the package: the
	# virtualenv finds it in this checkout, for `e2a dev`, bench/ and tests.
	$(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	    | xargs -I{} sh -c 'echo "$(CURDIR)/devtools" > {}/e2a-devtools.pth'
	touch $@
