# femtotcp: build, test, demo. `make test` works on a fresh machine: it builds
# .venv from pyproject.toml and, when run as root, installs the Debian peers the
# kernel tests use.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEB_PEERS := iproute2 iputils-ping curl socat dnsmasq tshark vde2 iptables openssl radvd ethtool \
             busybox iperf3 slirp4netns passt hping3

.PHONY: all demo test lint bench venv deps clean tiny size fuzz

all: test

$(VENV)/.stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,lint]'
	touch $@

venv: $(VENV)/.stamp

# Debian packages for the real peers (kernel tests), only when root.
deps:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; for p in $(DEB_PEERS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian peers (kernel tests will skip)"; fi

demo: venv
	$(VPY) -m femtotcp demo

test: venv deps
	$(VPY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

# The seed's set (picoTCP's: IPv4, ARP, ICMP, UDP, TCP, a DNS client) plus the
# socket API behind `femtotcp run`, as one file: python3 build/femtotcp-tiny.pyz serve ...
TINY_MODULES := arp,ipv4,icmp4,udp,tcp,dns,run
tiny: venv
	@mkdir -p build
	$(VPY) -m femtotcp build --modules $(TINY_MODULES) -o build/femtotcp-tiny.pyz

size: venv
	$(VPY) -m femtotcp size

bench: venv deps
	$(VPY) -m bench.run
	$(VPY) -m bench.programs

# Coverage-guided fuzzing (atheris/libFuzzer) of every parser and of Stack.receive,
# IPv4 and IPv6; not part of `make test`. FUZZ_RUNS inputs per target, FUZZ_TARGETS
# to pick some; FUZZ_HARVEST=0 skips seeding the IPv6 targets from the IPv6 tests.
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?=
FUZZ_HARVEST ?= 1
fuzz: venv
	$(VPY) -m pip install -q -e '.[fuzz]'
	@if [ "$(FUZZ_HARVEST)" = 1 ]; then $(VPY) -m fuzz.harvest; fi
	$(VPY) -m fuzz.run --runs $(FUZZ_RUNS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) bench/.venv-pytcp build *.egg-info src/*.egg-info .pytest_cache
