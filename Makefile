# Everything sets itself up: a virtualenv in .venv and the Debian packages the tests use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := bird2 gobgpd iproute2 iputils-ping containernetworking-plugins iptables nftables etcd-server
CORE := bgpd/messages bgpd/fsm bgpd/rib bgpd/kernel bgpd/speaker.py bgpd/standalone.py bgpd/standalone_config.py reflector \
	bgpd/datastore bgpd/ipam bgpd/cni bgpd/resources bgpd/ctl bgpd/node bgpd/policy bgpd/lab bgpd/config_diff.py bgpd/cli.py
BENCH ?=
FUZZ_COUNT ?= 1000000
CNI_BIN_DIR ?= /opt/cni/bin

.PHONY: all setup debian-deps run test lint unit bench fuzz clean cni-install

all: test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Installs only what is missing, so a machine that has everything makes no apt call.
debian-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: cannot install$$missing (tests that need them will skip, or fail under CI=true)"; fi; \
	fi

# A local cluster in network namespaces: NODES=3 MODE=mesh|reflector ENCAP=direct|vxlan|crosssubnet
# DATASTORE=directory|etcd
NODES ?= 3
MODE ?= mesh
ENCAP ?= direct
DATASTORE ?= directory
run: setup debian-deps
	$(PY) -m bgpd.lab --nodes $(NODES) --mode $(MODE) --encap $(ENCAP) --datastore $(DATASTORE)

cni-install: setup
	$(PY) -m bgpd.cni.install $(CNI_BIN_DIR)

lint: setup
	$(VENV)/bin/ruff check bgpd reflector tests bench tools docker
	$(VENV)/bin/mypy --strict $(CORE)

unit: setup
	$(PY) -m pytest -q

test: setup debian-deps lint
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup debian-deps
	$(PY) -m bench $(BENCH)

fuzz: setup
	$(PY) -m tests.messages.fuzz --count $(FUZZ_COUNT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
