# `make run` starts the product (the operator against your cluster, or one relay locally);
# `make test` installs what the tests need and runs them. Both work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
DEB_PACKAGES := postfix libsasl2-modules openssl ca-certificates procps iproute2 opendkim opendkim-tools \
	debootstrap podman runc prometheus-postfix-exporter prometheus skopeo
# Releases (hack/release.py; skopeo, which pushes the images, is in DEB_PACKAGES for the tests): qemu-user-static
# runs the arm64 builds, debian-archive-keyring lets debootstrap check Debian's signatures on any runner.
RELEASE_PACKAGES := qemu-user-static binfmt-support debian-archive-keyring
EXAMPLE ?= examples/mailrelay.yaml
REGISTRY ?= ghcr.io/mailrelay-dev
PLATFORMS ?= linux/amd64,linux/arm64
COSIGN_KEY ?= cosign.key
COSIGN_PUBLIC_KEY ?= cosign.pub

.PHONY: run test lint unit bench system-deps release-deps tools release-tools controlplane cluster docs generate \
	schemas clean images bump release registry-login release-notes

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

system-deps:
	$(call install-debs,$(DEB_PACKAGES))

# In a container (the release workflow's) binfmt_misc is not mounted, so qemu-user-static's registration
# has nowhere to go: mount it and register qemu's interpreters (root only; a no-op when already done).
release-deps: system-deps
	$(call install-debs,$(RELEASE_PACKAGES))
	@if [ "$$(id -u)" = 0 ]; then \
		[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
		update-binfmts --enable; \
	fi

# Both images from image/*/Dockerfile: podman build (chroot isolation, vfs) on a debootstrapped Debian
# base; rootfs and images cached in /var/cache/mailrelay-operator, rebuilt only when their inputs change.
images: $(VENV)/.installed system-deps
	$(PY) image/build.py

tools: $(VENV)/.installed
	$(PY) hack/fetch_kube_tools.py $(TOOLS)

# The OCI registry, cosign, syft and actionlint, built from the pinned Go modules in tools/gotools (and the
# registry's in tools/controlplane/registry) into /var/cache/mailrelay-operator, once per pin.
release-tools: $(VENV)/.installed
	$(PY) tools/gotools/build.py

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
	$(PY) -m pytest -m "not postfix and not controlplane and not pod and not release"

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

# Releases (docs/releasing.md). `make bump VERSION=x.y.z` writes the version everywhere and opens its
# CHANGELOG.md section; `make release VERSION=x.y.z` checks that everything agrees, then builds both images
# for $(PLATFORMS), pushes them with their SBOMs and cosign signatures to $(REGISTRY), and the chart to
# oci://$(REGISTRY)/charts, and verifies it all with $(COSIGN_PUBLIC_KEY). Needs root (image builds).
bump: $(VENV)/.installed
	@test -n "$(VERSION)" || { echo "usage: make bump VERSION=x.y.z" >&2; exit 2; }
	$(PY) hack/release.py bump $(VERSION)

release: $(VENV)/.installed release-deps tools release-tools
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z [REGISTRY=...] [PLATFORMS=...] [COSIGN_KEY=...]" >&2; exit 2; }
	$(PY) hack/release.py check $(VERSION)
	PATH="$(abspath $(TOOLS)):$$PATH" $(PY) hack/release.py publish --registry $(REGISTRY) --platforms $(PLATFORMS) \
		--key $(COSIGN_KEY) --public-key $(COSIGN_PUBLIC_KEY) $(if $(SUMMARY),--summary $(SUMMARY))

# skopeo, helm and cosign logged in to $(REGISTRY)'s host as REGISTRY_USERNAME with REGISTRY_PASSWORD (both
# from the environment; the password never reaches an argument list).
registry-login: $(VENV)/.installed release-deps tools release-tools
	PATH="$(abspath $(TOOLS)):$$PATH" $(PY) hack/release.py login $(REGISTRY)

# The CHANGELOG.md section of a version: the text of its GitHub release.
release-notes: $(VENV)/.installed
	@$(PY) hack/release.py notes $(VERSION)

# Upstream Kubernetes shapes (affinity, topology spread, ...) into the CRDs, the operator and the chart schema.
schemas: $(VENV)/.installed
	$(PY) hack/upstream_schemas.py write

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .cluster
