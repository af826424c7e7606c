"""A libvirtd of a simulated compute host: its own daemon inside the host's network namespace,
so that the taps of its guests are made there, beside the host's datapath.

One libvirtd per machine makes every guest's tap in the machine's own namespace; two compute
"hosts" on one machine would then share one datapath. Here each host gets a daemon of its
own, started as ``nsenter --net=<host> unshare --mount --propagation private sh -c '...'``:

* the network namespace is the host's (its bridges, VXLAN devices and taps);
* a private mount namespace binds directories of the test over the daemon's state
  (``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``, ``/var/cache/libvirt``)
  and its configuration (``/etc/libvirt``: a copy without the machine's domains and
  networks, and a ``qemu.conf`` of its own), so that it shares no pid file, lock, domain or
  socket with the machine's libvirtd or another host's, and nothing it writes outlives it;
* ``qemu.conf``: QEMU as root (see ``libvirtd.QEMU_CONF_SETTINGS``) and
  ``stdio_handler = "file"`` (QEMU writes its logs and the serial console's log file
  itself, so no virtlogd is needed);
* its socket is a file in the test's directory (``<root>/run/libvirt-sock``): unix sockets
  cross network namespaces, so a compute dials ``qemu+unix:///system?socket=...``.

``private_libvirtd`` starts it and always stops it: every domain it still has is destroyed
and undefined, the daemon gets SIGTERM (SIGKILL after a grace), and a QEMU still running in
the host's namespace is killed and reported.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.libvirtd import QEMU_CONF_SETTINGS, ensure_accounts, missing_packages

# The daemon's state and configuration directories, each replaced by one of the test's.
PRIVATE_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
    "etc": "/etc/libvirt",
}
QEMU_CONF = {**QEMU_CONF_SETTINGS, "stdio_handler": '"file"'}
# The machine's probe of QEMU's capabilities, reused: probing again takes ~10 s here.
CAPABILITIES_CACHE = Path("/var/cache/libvirt/qemu/capabilities")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PrivateLibvirtd:
    namespace: str
    root: Path
    pid: int

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log_path(self) -> Path:
        return self.root / "libvirtd.log"

    def virsh(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)  # fmt: skip

    def domains(self) -> list[str]:
        """Every domain the daemon has, running or only defined."""
        listed = self.virsh("list", "--all", "--name")
        if listed.returncode != 0:
            raise RuntimeError(f"virsh list: {listed.stderr.strip()}")
        return [name for name in listed.stdout.split() if name]


def _prepare(root: Path) -> None:
    for name in PRIVATE_DIRS:
        (root / name).mkdir(parents=True, exist_ok=True)
    for target in PRIVATE_DIRS.values():
        os.makedirs(target, exist_ok=True)  # the mount points (present wherever libvirt is)
    etc = root / "etc"
    shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "qemu", "qemu.conf", "storage", "*.nova-grpc.tmp"))  # fmt: skip
    (etc / "qemu").mkdir(exist_ok=True)  # no domain or network of the machine's daemon
    (etc / "qemu.conf").write_text("".join(f"{k} = {v}\n" for k, v in QEMU_CONF.items()))
    if CAPABILITIES_CACHE.is_dir():
        shutil.copytree(CAPABILITIES_CACHE, root / "cache" / "qemu" / "capabilities",
                        dirs_exist_ok=True)  # fmt: skip


def _command(namespace: str, root: Path) -> list[str]:
    binds = " && ".join(f"mount --bind {shlex.quote(str(root / name))} {target}"
                        for name, target in PRIVATE_DIRS.items())  # fmt: skip
    pidfile = shlex.quote(str(root / "libvirtd.pid"))
    # nsenter, unshare and sh each exec the next: the Popen's pid is libvirtd's own.
    return ["nsenter", f"--net=/run/netns/{namespace}", "unshare", "--mount", "--propagation",
            "private", "sh", "-c",
            f"{binds} && exec libvirtd --pid-file {pidfile}"]  # fmt: skip


def _namespace_inode(namespace: str) -> int:
    return os.stat(f"/run/netns/{namespace}").st_ino


def qemu_in(namespace: str) -> list[int]:
    """QEMU processes whose network namespace is ``namespace`` (none once it is gone)."""
    try:
        inode = _namespace_inode(namespace)
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (b"qemu-system" in (entry / "cmdline").read_bytes()
                    and os.stat(entry / "ns" / "net").st_ino == inode):  # fmt: skip
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


@contextmanager
def private_libvirtd(namespace: str, root: Path) -> Iterator[PrivateLibvirtd]:
    """A libvirtd in ``namespace`` (a named network namespace) with its state under
    ``root``; stopped, with its domains, whatever happens. RuntimeError when it cannot
    start (the message has its log)."""
    if os.geteuid() != 0:
        raise RuntimeError("a private libvirtd needs root")
    missing = missing_packages()
    if missing or shutil.which("libvirtd", path="/usr/sbin:/usr/bin") is None:
        raise RuntimeError(f"libvirt is not installed (missing: {missing})")
    ensure_accounts()
    _prepare(root)
    with (root / "libvirtd.log").open("ab") as log:
        process = subprocess.Popen(_command(namespace, root), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    daemon = PrivateLibvirtd(namespace, root, process.pid)
    try:
        _wait_answering(daemon, process)
        yield daemon
    finally:
        _stop(daemon, process)


def _wait_answering(daemon: PrivateLibvirtd, process: subprocess.Popen[bytes]) -> None:
    deadline, last = time.monotonic() + START_TIMEOUT_S, ""
    while True:
        if process.poll() is not None:
            log = daemon.log_path.read_text(errors="replace")[-2000:]
            code = process.returncode
            raise RuntimeError(f"libvirtd in {daemon.namespace} exited ({code}): {log}")
        if daemon.socket.exists():
            answer = daemon.virsh("version", timeout=max(1.0, deadline - time.monotonic()))
            if answer.returncode == 0 and "QEMU" in answer.stdout:
                return
            last = answer.stderr.strip()
        if time.monotonic() > deadline:
            raise RuntimeError(f"libvirtd in {daemon.namespace} did not answer: {last}")
        time.sleep(0.1)


def _stop(daemon: PrivateLibvirtd, process: subprocess.Popen[bytes]) -> None:
    leftovers: list[str] = []
    if process.poll() is None and daemon.socket.exists():
        try:
            for name in daemon.domains():
                daemon.virsh("destroy", name)
                daemon.virsh("undefine", name, "--nvram")
                leftovers.append(name)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            leftovers.append(f"(domains unknown: {exc})")
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in qemu_in(daemon.namespace):
        os.kill(pid, signal.SIGKILL)
        leftovers.append(f"qemu pid {pid}")
    if leftovers:
        # Cleaned up; said, because a test that left a domain behind has a bug to find.
        print(f"private libvirtd in {daemon.namespace}: removed leftovers {leftovers}")
