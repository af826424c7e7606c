"""The config drive: what the guest learns about itself, on an ISO 9660 volume labelled
``config-2`` with OpenStack's ``openstack/latest/`` layout, as cloud-init reads it (Nova's
``nova/virt/configdrive.py``). Built with xorriso, attached as a read-only CD-ROM."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from services.compute.virt.driver import HypervisorError
from services.compute.virt.metadata import ConfigDriveContent

LABEL = "config-2"
XORRISO_TIMEOUT_S = 60


def build_config_drive(content: ConfigDriveContent, target: Path) -> Path:
    """Write the ISO to ``target`` (0600: it may hold the admin password)."""
    if shutil.which("xorriso") is None:
        raise HypervisorError("xorriso is not installed on this host: cannot build a config drive")
    with tempfile.TemporaryDirectory(prefix="configdrive-") as tmp:
        latest = Path(tmp) / "openstack" / "latest"
        latest.mkdir(parents=True)
        (latest / "meta_data.json").write_text(json.dumps(content.meta_data(), sort_keys=True))
        if content.network_data:
            (latest / "network_data.json").write_text(
                json.dumps(content.network_data, sort_keys=True)
            )
        if content.user_data:
            (latest / "user_data").write_bytes(base64.b64decode(content.user_data))
        partial = target.with_name(target.name + ".part")
        result = subprocess.run(
            ["xorriso", "-as", "mkisofs", "-o", str(partial), "-ldots", "-allow-lowercase",
             "-allow-multidot", "-l", "-publisher", "nova-grpc", "-quiet", "-J", "-r",
             "-V", LABEL, tmp],
            capture_output=True, text=True, timeout=XORRISO_TIMEOUT_S, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise HypervisorError(f"building the config drive failed: {result.stderr.strip()}")
        partial.chmod(0o600)
        partial.replace(target)
    return target
