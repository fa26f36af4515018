# `make run` starts the product (the operator against your cluster, or one relay locally);
# `make test` installs what the tests need and runs them. Both work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
DEB_PACKAGES := postfix libsasl2-modules openssl ca-certificates procps iproute2 opendkim opendkim-tools \
	debootstrap podman runc prometheus-postfix-exporter prometheus
EXAMPLE ?= examples/mailrelay.yaml

.PHONY: run test lint unit bench system-deps tools controlplane cluster docs generate schemas clean images

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

# Both images from image/*/Dockerfile: podman build (chroot isolation, vfs) on a debootstrapped Debian
# base; rootfs and images cached in /var/cache/mailrelay-operator, rebuilt only when their inputs change.
images: $(VENV)/.installed system-deps
	$(PY) image/build.py

tools: $(VENV)/.installed
	$(PY) hack/fetch_kube_tools.py $(TOOLS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), built once
# from the pinned Go modules in tools/controlplane into /var/cache/mailrelay-operator (MAILRELAY_CACHE_DIR);
# reused while the pins hold.
controlplane: $(VENV)/.installed
	$(PY) tools/controlplane/build.py

# That control plane in the foreground: kubeconfig in .cluster/kubeconfig, Ctrl-C stops it.
cluster: controlplane tools
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tools $(PY) -m controlplane

# The images need root (debootstrap, podman); without it the pod tests skip (they fail in CI).
test: $(VENV)/.installed system-deps tools controlplane lint $(if $(filter 0,$(shell id -u)),images)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) -m pytest

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

# With a kubeconfig (KUBECONFIG or ~/.kube/config): run the operator. Without: run one relay locally.
run: $(VENV)/.installed
	@if [ -n "$$KUBECONFIG" ] || [ -f "$$HOME/.kube/config" ]; then \
		$(VENV)/bin/mailrelay-operator run; \
	else \
		$(MAKE) --no-print-directory system-deps && $(VENV)/bin/mailrelay-operator local -f $(EXAMPLE); \
	fi

# Mail path cost, relay memory, and the controller at 1,000 relays on the real control plane (about 15 min).
# `make bench ARGS="--only scale --relays 1000"` for one part.
bench: $(VENV)/.installed system-deps tools controlplane
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tests:tools:hack:bench $(PY) bench/run.py $(ARGS)

# Files copied from one source (RBAC from operator/mailrelay/api/names.py, the chart's CRD, the API
# reference, the chart's README); tests/test_generated.py and tests/test_chart.py fail when they are stale.
generate: $(VENV)/.installed
	$(PY) hack/generate.py
	$(PY) hack/chart_readme.py write
	$(PY) hack/monitoring.py write

docs: generate

# Upstream Kubernetes shapes (affinity, topology spread, ...) into the CRDs, the operator and the chart schema.
schemas: $(VENV)/.installed
	$(PY) hack/upstream_schemas.py write

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .cluster
