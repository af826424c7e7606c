"""libvirt's event loop: console streams and domain events (a guest agent connecting) are
delivered through it. libvirt has one event implementation per process, and it must be
registered before a connection is opened to deliver that connection's events, so this is
process-wide by necessity: the first LibvirtHost.connect() starts it, and one daemon thread
runs it for the life of the process."""

from __future__ import annotations

import logging
import threading

import libvirt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_threads: list[threading.Thread] = []  # at most one


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:  # one bad callback must not stop every console
            log.warning("libvirt event loop: %s", exc)


def ensure_event_loop() -> None:
    """Registers libvirt's default event implementation and starts its thread, once."""
    with _lock:
        if _threads:
            return
        libvirt.virEventRegisterDefaultImpl()
        thread = threading.Thread(target=_run, name="libvirt-events", daemon=True)
        thread.start()
        _threads.append(thread)
