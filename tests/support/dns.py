"""A DNS server on loopback that answers A queries for one name with a list the test changes,
as a headless Service's name answers with its ready pods: for tests where conductors come and
go behind one ``dns:///`` target. The services reach it through gRPC's c-ares resolver, which
takes the server from the target's authority: ``dns://127.0.0.1:PORT/NAME:PORT``.

Only what that resolver asks is answered: A with the current addresses (TTL 0), anything else
(AAAA, TXT for a service config) with no records.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Sequence

TYPE_A = 1
CLASS_IN = 1


def _question(packet: bytes) -> tuple[str, int, int, int]:
    """(name, type, class, offset after the question) of the first question."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, qclass = struct.unpack("!HH", packet[offset + 1 : offset + 5])
    return ".".join(labels).lower(), qtype, qclass, offset + 5


class LoopbackDns:
    def __init__(self, name: str, addresses: Sequence[str] = ()) -> None:
        self.name = name.lower().rstrip(".")
        self._addresses = list(addresses)
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()
        self.queries = 0

    def target(self, port: int) -> str:
        """The gRPC target naming ``port`` on whatever addresses the name has now."""
        return f"dns://127.0.0.1:{self.port}/{self.name}:{port}"

    def set_addresses(self, addresses: Sequence[str]) -> None:
        with self._lock:
            self._addresses = list(addresses)

    def _answer(self, packet: bytes) -> bytes:
        name, qtype, qclass, end = _question(packet)
        with self._lock:
            addresses = list(self._addresses) if name == self.name else []
        known = name == self.name
        records = b""
        count = 0
        if known and qtype == TYPE_A and qclass == CLASS_IN:
            for address in addresses:
                # name as a pointer to the question (offset 12), TTL 0: never cached
                records += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 0, 4)
                records += socket.inet_aton(address)
                count += 1
        flags = 0x8180 if known else 0x8183  # a response, recursion available; NXDOMAIN
        header = struct.pack("!HHHHHH", int.from_bytes(packet[:2], "big"), flags, 1, count, 0, 0)
        return header + packet[12:end] + records

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self._answer(packet)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue  # not a query we understand: no answer, as a real server might
            self.queries += 1
            self._socket.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()
