"""The only module that imports libvirt: a thin, thread-safe wrapper of one connection that
turns libvirt errors into HypervisorError. libvirt-python releases the GIL in its calls, so the
manager runs these on a thread pool."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from services.compute.virt.driver import HypervisorError

log = logging.getLogger(__name__)

# libvirt's event loop: console streams and domain events (a guest agent connecting) are
# delivered through it. libvirt has one event implementation per process, and it must be
# registered before a connection is opened to deliver that connection's events, so this is
# process-wide by necessity: the first LibvirtHost.connect() starts it, and one daemon thread
# runs it for the life of the process.
_event_loop_lock = threading.Lock()
_event_loop_threads: list[threading.Thread] = []  # at most one


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:  # one bad callback must not stop every console
            log.warning("libvirt event loop: %s", exc)


def ensure_event_loop() -> None:
    """Registers libvirt's default event implementation and starts its thread, once."""
    with _event_loop_lock:
        if _event_loop_threads:
            return
        libvirt.virEventRegisterDefaultImpl()
        thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        thread.start()
        _event_loop_threads.append(thread)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    cpu_model: str
    memory_mb: int
    cpus: int
    hypervisor_type: str
    hostname: str


@dataclass(frozen=True, slots=True)
class RawDomain:
    uuid: str
    name: str
    state: int
    managed: bool
    # The compute host named in our metadata; "" when none is (or the domain is not ours).
    owner: str = ""


def _quiet_error_handler(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


class LibvirtHost:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._connection: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._agent_callback: int | None = None

    def connect(self) -> None:
        libvirt.registerErrorHandler(_quiet_error_handler, None)
        ensure_event_loop()
        try:
            self._connection = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot connect to {self.uri}: {exc}") from exc

    @property
    def connection(self) -> libvirt.virConnect:
        if self._connection is None:
            with self._lock:
                if self._connection is None:
                    self.connect()
        assert self._connection is not None
        return self._connection

    def node_info(self) -> NodeInfo:
        try:
            model, memory_mb, cpus, *_ = self.connection.getInfo()
            return NodeInfo(
                cpu_model=str(model),
                memory_mb=int(memory_mb),
                cpus=int(cpus),
                hypervisor_type=self.connection.getType(),
                hostname=self.connection.getHostname(),
            )
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"getInfo failed: {exc}") from exc

    def define_and_start(self, xml: str) -> None:
        try:
            domain = self.connection.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"defineXML failed: {exc}") from exc
        try:
            domain.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"starting the domain failed: {exc}") from exc

    def state(self, uuid: str) -> int | None:
        """libvirt's domain state number, or None when the domain does not exist."""
        try:
            domain = self.connection.lookupByUUIDString(uuid)
            state, _reason = domain.state()
            return int(state)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorError(f"reading the state of {uuid} failed: {exc}") from exc

    def _domain(self, uuid: str) -> libvirt.virDomain:
        try:
            return self.connection.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"domain {uuid} not found: {exc}") from exc

    def shutdown(self, uuid: str) -> None:
        """Ask the guest to shut down (ACPI); returns at once."""
        domain = self._domain(uuid)
        try:
            if domain.isActive():
                # ACPI explicitly: with a guest-agent channel defined libvirt would try the
                # agent first, and a guest that connects without answering (the tiny guest)
                # costs a sync timeout on every stop.
                _shutdown_acpi(domain)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"shutdown of {uuid} failed: {exc}") from exc

    def destroy(self, uuid: str) -> None:
        """Pull the plug; the domain stays defined."""
        domain = self._domain(uuid)
        try:
            if domain.isActive():
                _destroy(domain)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"destroy of {uuid} failed: {exc}") from exc

    def start(self, uuid: str) -> None:
        domain = self._domain(uuid)
        try:
            if not domain.isActive():
                domain.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"start of {uuid} failed: {exc}") from exc

    def destroy_and_undefine(self, uuid: str) -> bool:
        try:
            domain = self.connection.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise HypervisorError(f"looking up {uuid} failed: {exc}") from exc
        try:
            if domain.isActive():
                _destroy(domain)
            domain.undefine()  # our guests boot BIOS or direct kernel: no NVRAM to remove
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise HypervisorError(f"removing {uuid} failed: {exc}") from exc
        return True

    def list_domains(self, metadata_ns: str) -> list[RawDomain]:
        """Every domain, and whether it carries an element of ``metadata_ns``."""
        try:
            domains = self.connection.listAllDomains(0)
            return [
                RawDomain(d.UUIDString(), d.name(), int(d.state()[0]), *_ours(d, metadata_ns))
                for d in domains
            ]
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"listing domains failed: {exc}") from exc

    def watch_agents(self, connected: Callable[[str], None]) -> None:
        """Calls ``connected(uuid)`` (on libvirt's event thread) whenever a guest opens its
        guest-agent channel (VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, state connected)."""

        def on_event(
            _conn: object, domain: libvirt.virDomain, state: int, _reason: int, _opaque: object
        ) -> None:
            if state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
                try:
                    connected(domain.UUIDString())
                except Exception:  # never let an exception into libvirt's event loop
                    log.exception("guest agent connection report failed")

        try:
            self._agent_callback = self.connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, on_event, None
            )
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot watch guest agents: {exc}") from exc

    def close(self) -> None:
        if self._connection is not None and self._agent_callback is not None:
            try:
                self._connection.domainEventDeregisterAny(self._agent_callback)
            except libvirt.libvirtError as exc:
                log.debug("deregistering the agent callback: %s", exc)
            self._agent_callback = None
        if self._connection is not None:
            try:
                self._connection.close()
            except libvirt.libvirtError as exc:
                log.debug("closing the libvirt connection: %s", exc)
            self._connection = None


def _ours(domain: libvirt.virDomain, namespace: str) -> tuple[bool, str]:
    """(carries our metadata, the compute host it names)."""
    try:
        text = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace)
    except libvirt.libvirtError:
        return False, ""
    try:
        element = ET.fromstring(text)
    except ET.ParseError:
        return True, ""
    owner = next((child.text or "" for child in element if child.tag.endswith("host")), "")
    return True, owner


def _shutdown_acpi(domain: libvirt.virDomain) -> None:
    try:
        domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    except libvirt.libvirtError as exc:
        # libvirt's test driver takes no shutdown mode (and has no agent to prefer).
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        domain.shutdown()


def _destroy(domain: libvirt.virDomain) -> None:
    """destroy(), where a domain that stopped meanwhile counts as destroyed: QEMU killed with
    a console stream open can be reaped by libvirt's own cleanup before destroy takes its
    job, and destroy then answers "domain is not running"."""
    try:
        domain.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not domain.isActive():
            return
        raise
