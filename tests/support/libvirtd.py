"""A usable ``qemu:///system`` in this sandbox: libvirtd + virtlogd as root, no systemd.

``ensure_libvirtd()`` is idempotent and cheap when everything already runs:

* creates the users/groups the Debian daemon package expects (its postinst is in
  libvirt-daemon-system, which is not installed): groups kvm, libvirt-qemu, libvirt
  and the system user libvirt-qemu; libvirtd refuses to start without them;
* ``mkdir -p /var/log/libvirt /var/run/libvirt``;
* keeps one marked block in /etc/libvirt/qemu.conf (see ``QEMU_CONF_SETTINGS``);
* starts ``virtlogd -d`` and ``libvirtd -d`` when their sockets do not answer
  (restarts libvirtd when it runs but the qemu.conf block was just written);
* waits until ``virsh -c qemu:///system version`` answers.

Guests must use ``<domain type='qemu'>`` (TCG): /dev/kvm exists but a Linux guest
hangs under nested KVM here.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time

URI = "qemu:///system"

# Debian 12 packages for a real hypervisor plus the tiny guest and its config drive.
# Installed with `apt-get install -y --no-install-recommends`; a guest booted with
# exactly these (deploy/guest/build_guest_image.py writes its cpio itself, so no cpio).
DEBIAN_PACKAGES: tuple[str, ...] = (
    "libvirt-daemon",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "xorriso",
)

QEMU_CONF = "/etc/libvirt/qemu.conf"
_BEGIN = "# BEGIN nova-grpc sandbox settings (tests/support/libvirtd.py)"
_END = "# END nova-grpc sandbox settings"
# user = "root": QEMU runs as root instead of libvirt-qemu.  Needed because
#  1. without udev /dev/kvm is 0600 root:root, so libvirt judges its cached QEMU
#     capabilities invalid ("KVM was enabled when probing ... not available now")
#     and re-probes QEMU on every connection: ~4 s per connect, ~47 s per define;
#  2. QEMU as libvirt-qemu cannot open kernels/initrds/ISOs under 0700 dirs
#     (e.g. pytest's /tmp/pytest-of-root): "could not open kernel file ...
#     Permission denied".
QEMU_CONF_SETTINGS: dict[str, str] = {"user": '"root"'}

RUN_DIR = "/var/run/libvirt"
LOG_DIR = "/var/log/libvirt"
LIBVIRTD_SOCK = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
LIBVIRTD_PID = "/run/libvirtd.pid"
LIBVIRTD_LOG = "/var/log/libvirt/libvirtd.log"

_SBIN_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def missing_packages() -> list[str]:
    """Those of DEBIAN_PACKAGES that dpkg does not list as installed."""
    missing = []
    for pkg in DEBIAN_PACKAGES:
        r = _run("dpkg-query", "-W", "-f=${Status}", pkg)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


def _socket_answers(path: str) -> bool:
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _log_tail(lines: int = 8) -> str:
    try:
        with open(LIBVIRTD_LOG, errors="replace") as f:
            tail = f.read().splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  " + "\n  ".join(tail) if tail else ""


def ensure_accounts() -> None:
    """The users and groups libvirtd refuses to start without (see the module's docstring)."""

    def group_exists(name: str) -> bool:
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    def user_exists(name: str) -> bool:
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False

    steps: list[tuple[str, ...]] = []
    for group in ("kvm", "libvirt-qemu"):
        if not group_exists(group):
            steps.append(("groupadd", "-r", group))
    if not user_exists("libvirt-qemu"):
        steps.append(
            (
                "useradd",
                "-r",
                "-g",
                "libvirt-qemu",
                "-G",
                "kvm",
                "-d",
                "/var/lib/libvirt",
                "-s",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            )
        )
    if not group_exists("libvirt"):
        steps.append(("groupadd", "-r", "libvirt"))
    for cmd in steps:
        r = _run(*cmd)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


def _ensure_qemu_conf() -> bool:
    """Write the marked settings block; True when the file changed."""
    try:
        with open(QEMU_CONF) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    block = (
        "\n".join([_BEGIN] + [f"{k} = {v}" for k, v in QEMU_CONF_SETTINGS.items()] + [_END]) + "\n"
    )
    # Drop an earlier block of ours, then disable conflicting active settings.
    outside = re.sub(re.escape(_BEGIN) + r".*?" + re.escape(_END) + r"\n?", "", text, flags=re.S)
    lines = []
    for line in outside.splitlines(keepends=True):
        m = re.match(r"\s*(\w+)\s*=", line)
        if m and m.group(1) in QEMU_CONF_SETTINGS:
            lines.append("#" + line.rstrip("\n") + "  # disabled by nova-grpc\n")
        else:
            lines.append(line)
    outside = "".join(lines)
    if outside and not outside.endswith("\n"):
        outside += "\n"
    new = outside + block
    if new == text:
        return False
    os.makedirs(os.path.dirname(QEMU_CONF), exist_ok=True)
    tmp = QEMU_CONF + ".nova-grpc.tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, QEMU_CONF)
    return True


def _start_daemon(binary: str, sock: str, deadline: float) -> None:
    r = subprocess.run(
        [binary, "-d"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        start_new_session=True,
        timeout=max(5.0, deadline - time.monotonic()),
    )
    if r.returncode != 0:
        raise RuntimeError(
            f"{binary} -d exited {r.returncode}: {r.stderr.strip()}"
            + (_log_tail() if "libvirtd" in binary else "")
        )
    while not _socket_answers(sock):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{binary} started but {sock} does not answer")
        time.sleep(0.1)


def _stop_libvirtd(deadline: float) -> None:
    try:
        with open(LIBVIRTD_PID) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"libvirtd runs but its pid is unknown ({LIBVIRTD_PID}: {e})") from e
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    while _socket_answers(LIBVIRTD_SOCK) or _pid_alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"libvirtd (pid {pid}) did not stop after SIGTERM")
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def ensure_libvirtd(timeout: float = 30) -> None:
    """Make qemu:///system usable (see module docstring); RuntimeError says what failed."""
    deadline = time.monotonic() + timeout
    if os.geteuid() != 0:
        raise RuntimeError("ensure_libvirtd needs root (libvirtd runs as root here)")
    found = {name: _which(name) for name in ("libvirtd", "virtlogd", "virsh")}
    binaries = {name: path for name, path in found.items() if path is not None}
    missing = sorted(set(found) - set(binaries))
    if missing:
        raise RuntimeError(
            f"missing {', '.join(missing)}; install: apt-get install -y "
            f"--no-install-recommends {' '.join(DEBIAN_PACKAGES)}"
        )

    ensure_accounts()
    for d in (LOG_DIR, RUN_DIR):
        os.makedirs(d, exist_ok=True)
    conf_changed = _ensure_qemu_conf()

    if not _socket_answers(VIRTLOGD_SOCK):
        _start_daemon(binaries["virtlogd"], VIRTLOGD_SOCK, deadline)
    if _socket_answers(LIBVIRTD_SOCK):
        if conf_changed:
            _stop_libvirtd(deadline)
            _start_daemon(binaries["libvirtd"], LIBVIRTD_SOCK, deadline)
    else:
        _start_daemon(binaries["libvirtd"], LIBVIRTD_SOCK, deadline)

    # The first connection after a start probes QEMU's capabilities (~10 s here).
    last = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"`virsh -c {URI} version` did not answer within {timeout:.0f} s: {last}"
                + _log_tail()
            )
        try:
            r = _run(binaries["virsh"], "-c", URI, "version", timeout=max(1.0, remaining))
        except subprocess.TimeoutExpired:
            last = "timed out"
            continue
        if r.returncode == 0 and "QEMU" in r.stdout:
            return
        last = (r.stderr or r.stdout).strip()
        time.sleep(0.5)


def sweep(uri: str, *, domain_prefix: str, namespace_prefix: str = "") -> list[str]:
    """What a failed test left behind, removed so that its guests stop eating the CPU the
    next tests need: domains named ``domain_prefix``… (destroyed, undefined) and network
    namespaces named ``namespace_prefix``…. Returns what it removed (nothing after a test
    that passed, which cleans up through the API and asserts it did)."""
    import libvirt  # noqa: PLC0415 - tests that never sweep need no libvirt binding

    removed: list[str] = []
    conn = libvirt.open(uri)
    try:
        for domain in conn.listAllDomains():
            if not domain.name().startswith(domain_prefix):
                continue
            if domain.isActive():
                domain.destroy()
            if domain.isPersistent():
                domain.undefine()
            removed.append(domain.name())
    finally:
        conn.close()
    if namespace_prefix:
        removed += sweep_namespaces(namespace_prefix)
    return removed


def sweep_namespaces(prefix: str) -> list[str]:
    """Remove the network namespaces named ``prefix``… and end what still runs in them
    (deleting a namespace does not end its dnsmasq). Returns the names removed."""
    removed: list[str] = []
    for name in _run("ip", "netns", "list").stdout.split():
        if name.startswith(prefix):
            for pid in _run("ip", "netns", "pids", name).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", name)
            removed.append(name)
    return removed
