# `make run` starts the product (the operator against your cluster, or one relay locally);
# `make test` installs what the tests need and runs them. Both work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
# The real node (tools/node): Debian's container runtime, CNI plugins, and what kube-proxy and kube-router's
# firewall program (iptables, ipset, conntrack).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables ipset conntrack
DEB_PACKAGES := postfix libsasl2-modules openssl ca-certificates procps iproute2 opendkim opendkim-tools \
	debootstrap podman runc prometheus-postfix-exporter prometheus $(NODE_PACKAGES)
EXAMPLE ?= examples/mailrelay.yaml

.PHONY: run test lint unit bench system-deps tools controlplane node cluster cluster-kwok node-test docs generate \
	schemas clean images

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian packages for the real-Postfix tests, installed when running as root.
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run make as root to install them)"; exit 0; fi; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

# Every image (image/*/Dockerfile and the node's image/testing/*): podman build (chroot isolation, vfs) on a
# debootstrapped Debian base; rootfs and images cached in /var/cache/mailrelay-operator, rebuilt only when
# their inputs change; then pushed to the local registry there (Distribution, built once from its pinned Go
# module like the control plane), which the node pulls from.
images: $(VENV)/.installed system-deps
	PYTHONPATH=tools $(PY) -m node.images

tools: $(VENV)/.installed
	$(PY) tests/tools/fetch_kube_tools.py $(TOOLS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), built once
# from the pinned Go modules in tools/controlplane into /var/cache/mailrelay-operator (MAILRELAY_CACHE_DIR);
# reused while the pins hold.
controlplane: $(VENV)/.installed
	$(PY) tools/controlplane/build.py

# The node's binaries (kubelet and kube-proxy from the same pin, CoreDNS, the registry, kube-router), cached
# the same way, one cache folder per module.
node: $(VENV)/.installed
	$(PY) tools/controlplane/build.py node

# The control plane and a real node (tools/node, root) in the foreground: kubeconfig in .cluster/kubeconfig,
# Ctrl-C stops it and removes everything the node made.
cluster: controlplane node tools system-deps
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tools $(PY) -m node

# The control plane with kwok's fake nodes only (what the scale bench uses).
cluster-kwok: controlplane tools
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tools $(PY) -m controlplane

# The real node's smoke tests and the first journey step (tests/node).
node-test: $(VENV)/.installed system-deps tools controlplane node
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) -m pytest tests/node

# The images and the real node need root (debootstrap, podman, namespaces); without it the pod and node
# tests skip (they fail in CI).
test: $(VENV)/.installed system-deps tools controlplane lint $(if $(filter 0,$(shell id -u)),node images)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) -m pytest

unit: $(VENV)/.installed
	$(PY) -m pytest -m "not postfix and not controlplane and not pod and not node"

# With a kubeconfig (KUBECONFIG or ~/.kube/config): run the operator. Without: run one relay locally.
run: $(VENV)/.installed
	@if [ -n "$$KUBECONFIG" ] || [ -f "$$HOME/.kube/config" ]; then \
		$(VENV)/bin/mailrelay-operator run; \
	else \
		$(MAKE) --no-print-directory system-deps && $(VENV)/bin/mailrelay-operator local -f $(EXAMPLE); \
	fi

# Mail path cost, relay memory, and the controller at 1,000 relays on the real control plane (about 15 min).
bench: $(VENV)/.installed system-deps tools controlplane
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) bench/run.py

# Files copied from one source (RBAC from operator/mailrelay/identity.py, the chart's CRD, the API
# reference, the chart's README); tests/test_generated.py and tests/test_chart.py fail when they are stale.
generate: $(VENV)/.installed
	$(PY) hack/generate.py
	$(PY) tests/tools/chart_readme.py write
	$(PY) tests/tools/monitoring.py write

docs: generate

# Upstream Kubernetes shapes (affinity, topology spread, ...) into the CRDs, the operator and the chart schema.
schemas: $(VENV)/.installed
	$(PY) tests/tools/upstream_schemas.py write

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .cluster
