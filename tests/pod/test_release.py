"""`make release` as the release workflow runs it, against a real OCI registry (CNCF Distribution) on
loopback that wants a login: each image one index over its platforms, signed, with an SBOM attestation
per platform, the chart an OCI artifact; all verifiable with the public key and with no other; and the
README's mirroring commands carrying images, signatures and chart to another repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import ROOT
from support.released import platforms
from support.releasekit import key_pair, make, offline

pytestmark = pytest.mark.release  # image builds: root, podman, debootstrap

INDEX = "application/vnd.oci.image.index.v1+json"


def _cosign(published: Any) -> Any:
    from gotools.build import ensure
    from signing import Cosign

    keys = (str(published.key), str(published.public_key))
    return Cosign(str(ensure("cosign")), *keys, plain_http=True, env=offline(published.env))


def _run(published: Any, *command: str) -> str:
    done = subprocess.run(command, env=offline(published.env), capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_each_image_is_one_index_over_the_released_platforms(published: Any) -> None:
    wanted = set(platforms().split(","))
    revision = subprocess.run(
        ["git", "-C", str(published.tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for name, image in published.summary["images"].items():
        repository = image["reference"].split("/", 1)[1]
        assert published.version in published.registry.tags(repository)
        media_type, index = published.registry.manifest(repository, published.version)
        assert media_type == INDEX, name
        digests = {
            "/".join(m["platform"][k] for k in ("os", "architecture", "variant") if k in m["platform"]): m["digest"]
            for m in index["manifests"]
        }
        assert digests == image["platforms"] and set(digests) == wanted, name
        annotations = index["annotations"]
        assert annotations["org.opencontainers.image.version"] == published.version
        assert annotations["org.opencontainers.image.revision"] == revision


def test_signatures_verify_with_the_public_key_and_no_other(published: Any, tmp_path: Path) -> None:
    from signing import SigningError

    cosign = _cosign(published)
    _, stranger = key_pair(tmp_path, published.env, "stranger")
    chart = published.summary["chart"]
    references = [f"{chart['reference'].removeprefix('oci://')}@{chart['digest']}"]
    for image in published.summary["images"].values():
        references.append(f"{image['reference']}@{image['digest']}")
        references += [f"{image['reference']}@{digest}" for digest in image["platforms"].values()]
    for reference in references:
        cosign.verify(reference)
        with pytest.raises(SigningError, match=r"no matching signatures|signatures do not match|failed to verify"):
            cosign.verify(reference, key=str(stranger))


def test_every_platform_has_a_signed_spdx_sbom_of_what_it_holds(published: Any) -> None:
    """The attested SBOM lists what the image really contains: Debian's postfix package in the relay
    image, kopf (from PyPI) in the operator's."""
    cosign = _cosign(published)
    expected = {"postfix": "postfix", "operator": "kopf"}
    for name, image in published.summary["images"].items():
        for platform, digest in image["platforms"].items():
            [statement] = cosign.verify_attestation(f"{image['reference']}@{digest}")
            assert statement["predicateType"] == "https://spdx.dev/Document"
            assert [s["digest"]["sha256"] for s in statement["subject"]] == [digest.removeprefix("sha256:")]
            sbom = statement["predicate"]
            assert sbom["spdxVersion"].startswith("SPDX-2.")
            packages = {p["name"]: p.get("versionInfo") for p in sbom["packages"]}
            assert expected[name] in packages, (name, platform, sorted(packages)[:40])
            assert any(p["name"] == "base-files" for p in sbom["packages"])  # Debian's, from the base


def test_the_chart_is_an_oci_artifact_of_the_release(published: Any, tools: Path) -> None:
    chart = published.summary["chart"]
    helm = str(tools / "helm")
    shown = yaml.safe_load(
        _run(published, helm, "show", "chart", chart["reference"], "--version", published.version, "--plain-http")
    )
    assert (shown["version"], shown["appVersion"]) == (published.version, published.version)
    media_type, manifest = published.registry.manifest(chart["reference"].split("/", 3)[3], published.version)
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json", media_type
    rendered = [
        d
        for d in yaml.safe_load_all(
            _run(published, helm, "template", "mr", chart["reference"], "--version", published.version, "--plain-http")
        )
        if d
    ]
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/mailrelay-dev/mailrelay-operator:{published.version}"


def test_the_registry_admitted_the_maintainers_login_only(published: Any) -> None:
    """skopeo, helm and cosign each got their tokens with the credentials `make registry-login` stored."""
    agents = " ".join(published.tokens.admitted).lower()
    for tool in ("skopeo", "helm", "cosign"):
        assert tool in agents, published.tokens.admitted
    assert not any(tool in agent.lower() for agent in published.tokens.refused for tool in ("helm", "cosign"))


def test_make_release_refuses_a_version_the_tree_does_not_have_before_building(published: Any) -> None:
    wrong = published.version.replace("-rc.1", "-rc.2")
    done = make(
        published.tree,
        "release",
        f"VERSION={wrong}",
        f"REGISTRY={published.prefix}",
        f"COSIGN_KEY={published.key}",
        f"COSIGN_PUBLIC_KEY={published.public_key}",
        env=offline(published.env),
    )
    assert done.returncode != 0
    assert f"pyproject.toml says {published.version}, not {wrong}" in done.stderr
    assert "building" not in done.stderr and wrong not in published.registry.tags(f"{'mailrelay-dev'}/postfix")


def test_make_release_refuses_a_key_that_is_not_the_published_keys_pair(published: Any, tmp_path: Path) -> None:
    """The workflow's secret key and the committed cosign.pub disagree: nothing is built or pushed."""
    _, stranger = key_pair(tmp_path, published.env, "stranger")
    done = make(
        published.tree,
        "release",
        f"VERSION={published.version}",
        f"REGISTRY={published.prefix}",
        f"COSIGN_KEY={published.key}",
        f"COSIGN_PUBLIC_KEY={stranger}",
        env=offline(published.env),
    )
    assert done.returncode != 0 and f"the signing key is not the pair of {stranger}" in done.stderr, done.stderr
    assert "building" not in done.stderr


def _readme_mirror_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*A private registry\*\*.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block, "the README's mirroring commands"
    return block.group(1).replace("\\\n", " ").splitlines()


def test_the_readmes_mirroring_commands_copy_images_signatures_and_chart(published: Any, tools: Path) -> None:
    """The README's commands, run against the test registry: ghcr.io/mailrelay-dev is the release's
    repository here, `mirror/` the private one; plain-HTTP flags added as each tool spells them."""
    loopback = {
        "skopeo": "--src-tls-verify=false --dest-tls-verify=false",
        "helm": "--plain-http",
        "cosign": "--allow-insecure-registry --allow-http-registry",
    }
    script = []
    for line in _readme_mirror_block():
        command = line.split("#", 1)[0].rstrip()
        if command.lstrip().startswith("helm install"):
            continue  # on a cluster: tests/pod/test_upgrade.py installs with these values
        tool = command.split()[0] if command.split() else ""
        script.append(f"{command} {loopback[tool]}" if tool in loopback else command)
    text = "\n".join(script)
    text = text.replace("ghcr.io/mailrelay-dev", published.prefix).replace(
        "registry.example.com/mirror", f"{published.registry.address}/mirror"
    )
    text = re.sub(r"^VERSION=\S+", f"VERSION={published.version}", text, flags=re.MULTILINE)
    assert "skopeo copy --all" in text and "cosign copy" in text and "helm push" in text, text
    from gotools.build import ensure

    env = offline(published.env)
    env["PATH"] = f"{ensure('cosign').parent}:{env['PATH']}"  # cosign as a user installs it: on PATH
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=published.folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, f"{text}\n{done.stdout}\n{done.stderr}"
    cosign = _cosign(published)
    for _name, image in published.summary["images"].items():
        repository = f"mirror/{image['reference'].rsplit('/', 1)[1]}"
        media_type, index = published.registry.manifest(repository, published.version)
        assert media_type == INDEX and {m["digest"] for m in index["manifests"]} == set(image["platforms"].values())
        cosign.verify(f"{published.registry.address}/{repository}@{image['digest']}")
        for digest in image["platforms"].values():
            cosign.verify_attestation(f"{published.registry.address}/{repository}@{digest}")
    assert published.version in published.registry.tags("mirror/charts/mailrelay-operator")
