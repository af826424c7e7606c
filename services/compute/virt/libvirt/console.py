"""The console port on libvirt: each guest's serial console log, and interactive sessions on
its pty serial device through virDomainOpenConsole (with VIR_DOMAIN_CONSOLE_FORCE: a new
session takes over, as ``virsh console --force``)."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import libvirt

from services.common.errors import NotFound, Unavailable, WrongState
from services.compute.console.ports import ConsoleClosed, ConsoleSink
from services.compute.virt.driver import HypervisorError
from services.compute.virt.images import InstanceStorage
from services.compute.virt.libvirt.host import LibvirtHost

log = logging.getLogger(__name__)

TEST_DRIVER_HAS_NO_CONSOLE = (
    "this server runs on libvirt's test hypervisor (virt_type test), which runs no guest: "
    "there is no serial console to read or attach to"
)
READ_CHUNK = 64 * 1024
SEND_WAIT_S = 10.0
_READ_EVENTS = (
    libvirt.VIR_STREAM_EVENT_READABLE
    | libvirt.VIR_STREAM_EVENT_ERROR
    | libvirt.VIR_STREAM_EVENT_HANGUP
)
VIR_DOMAIN_RUNNING = 1


class LibvirtConsole:
    """One virStream in non-blocking mode; libvirt's event thread calls ``_on_event``."""

    def __init__(self, stream: libvirt.virStream, sink: ConsoleSink) -> None:
        self._stream: libvirt.virStream | None = stream
        self._sink = sink
        self._lock = threading.Lock()
        self._paused = False
        self._writable = threading.Event()
        self._ended = False

    def start(self) -> None:
        assert self._stream is not None
        self._stream.eventAddCallback(_READ_EVENTS, self._on_event, None)

    def _mask(self, *, writable: bool = False) -> int:
        mask = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        if not self._paused:
            mask |= libvirt.VIR_STREAM_EVENT_READABLE
        if writable:
            mask |= libvirt.VIR_STREAM_EVENT_WRITABLE
        return int(mask)

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._writable.set()
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            while not self._paused:
                try:
                    data = stream.recv(READ_CHUNK)
                except libvirt.libvirtError as exc:
                    self._end(f"the console stream failed: {exc}")
                    return
                if data == -2:
                    break
                if not data:
                    self._end("the guest's console closed (end of stream)")
                    return
                self._sink.data(bytes(data))
        if events & libvirt.VIR_STREAM_EVENT_HANGUP:
            self._end("the guest's console closed (hangup)")
        if events & libvirt.VIR_STREAM_EVENT_ERROR:
            self._end("the guest's console closed (stream error)")

    def _end(self, reason: str) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._writable.set()
        self._sink.ended(reason)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                stream = None if self._ended else self._stream
            if stream is None:
                raise ConsoleClosed("the console session has ended")
            try:
                sent = stream.send(bytes(view))
            except libvirt.libvirtError as exc:
                raise ConsoleClosed(f"the console stream failed: {exc}") from exc
            if sent == -2:  # libvirt's buffer is full: wait until it takes more
                self._writable.clear()
                stream.eventUpdateCallback(self._mask(writable=True))
                if not self._writable.wait(SEND_WAIT_S):
                    raise ConsoleClosed("the guest's console does not take input")
                stream.eventUpdateCallback(self._mask())
                continue
            view = view[sent:]

    def pause(self, paused: bool) -> None:
        with self._lock:
            stream = None if self._ended else self._stream
            self._paused = paused
        if stream is not None:
            try:
                stream.eventUpdateCallback(self._mask())
            except libvirt.libvirtError as exc:
                log.debug("console stream update: %s", exc)

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
            self._ended = True
        if stream is None:
            return
        # Remove the callback first (it holds a reference to the stream), then abort: the
        # daemon frees its end, and dropping our last reference frees ours (virStreamFree).
        try:
            stream.eventRemoveCallback()
        except libvirt.libvirtError as exc:
            log.debug("console stream callback removal: %s", exc)
        try:
            stream.abort()
        except libvirt.libvirtError as exc:
            log.debug("console stream abort: %s", exc)
        if hasattr(stream, "cb"):
            del stream.cb


class LibvirtConsoles:
    def __init__(self, host: LibvirtHost, storage: InstanceStorage, *, virt_type: str) -> None:
        self._host = host
        self._storage = storage
        self._virt_type = virt_type

    def _check(self, uuid: str) -> int:
        if self._virt_type == "test":
            raise WrongState(TEST_DRIVER_HAS_NO_CONSOLE)
        try:
            state = self._host.state(uuid)
        except HypervisorError as exc:
            raise Unavailable(f"libvirt did not answer: {exc}") from exc
        if state is None:
            raise NotFound("instance", uuid, field="instance_uuid")
        return state

    def console_log(self, uuid: str) -> Path:
        self._check(uuid)
        return self._storage.directory(uuid) / "console.log"

    def open_console(self, uuid: str, sink: ConsoleSink) -> LibvirtConsole:
        if self._check(uuid) != VIR_DOMAIN_RUNNING:
            raise WrongState("the server is not running: its console cannot be attached")
        connection = self._host.connection
        try:
            domain = connection.lookupByUUIDString(uuid)
            stream = connection.newStream(libvirt.VIR_STREAM_NONBLOCK)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NotFound("instance", uuid, field="instance_uuid") from exc
            raise Unavailable(f"libvirt did not answer: {exc}") from exc
        try:
            domain.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as exc:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise WrongState(f"libvirt cannot open the console: {exc.get_error_message()}") from exc
        console = LibvirtConsole(stream, sink)
        try:
            console.start()
        except libvirt.libvirtError as exc:
            console.close()
            raise WrongState(f"libvirt cannot watch the console: {exc}") from exc
        return console
