"""The SAN URIs of a PEM certificate, read without the cryptography package.

A service checks at start (and at each reload) that its own certificate names the identity it
is configured as: a compute started with another node's certificate would otherwise run, and
every report it sends be refused. Loading ``cryptography`` for that would cost each service
~10 MiB (see tls.py), and the standard library cannot parse a certificate file, so this walks
the DER structure (RFC 5280) just far enough: Certificate -> tbsCertificate -> extensions [3]
-> subjectAltName -> GeneralNames -> uniformResourceIdentifier [6]. Anything malformed is a
ValueError; the TLS library has already checked the certificate itself (KeyPairFiles.check).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)

_SEQUENCE = 0x30
_OID = 0x06
_OCTET_STRING = 0x04
_EXTENSIONS = 0xA3  # [3] EXPLICIT, constructed
_URI = 0x86  # GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String
_SUBJECT_ALT_NAME = bytes([0x55, 0x1D, 0x11])  # 2.5.29.17


def first_certificate_der(pem: bytes) -> bytes:
    """The first certificate of a PEM file (the leaf: a chain starts with it)."""
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("no PEM certificate found")
    return base64.b64decode(b"".join(match.group(1).split()), validate=True)


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``, inside ``end``."""
    if pos + 2 > end:
        raise ValueError("truncated DER element")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or pos + size > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("DER element runs past its parent")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, content, pos = _element(data, pos, end)
        yield tag, content, pos


def _only(data: bytes, start: int, end: int, *, tag: int) -> tuple[int, int]:
    """The content of the single element of ``tag`` that [start, end) holds."""
    found, content, content_end = _element(data, start, end)
    if found != tag or content_end != end:
        raise ValueError(f"expected one DER element of tag {tag:#x}")
    return content, content_end


def certificate_uris(pem: bytes) -> list[str]:
    """Every URI in the subjectAltName of the first certificate in ``pem``."""
    der = first_certificate_der(pem)
    certificate = _only(der, 0, len(der), tag=_SEQUENCE)
    tbs_tag, tbs_start, tbs_end = next(_children(der, *certificate), (None, 0, 0))
    if tbs_tag != _SEQUENCE:
        raise ValueError("not an X.509 certificate")
    uris: list[str] = []
    for tag, start, end in _children(der, tbs_start, tbs_end):
        if tag != _EXTENSIONS:
            continue
        for ext_tag, ext_start, ext_end in _children(der, *_only(der, start, end, tag=_SEQUENCE)):
            if ext_tag != _SEQUENCE:
                raise ValueError("malformed extension")
            parts = list(_children(der, ext_start, ext_end))
            if len(parts) < 2:
                raise ValueError("malformed extension")
            oid, value = parts[0], parts[-1]  # a BOOLEAN (critical) may sit between
            if oid[0] != _OID or der[oid[1] : oid[2]] != _SUBJECT_ALT_NAME:
                continue
            if value[0] != _OCTET_STRING:
                raise ValueError("malformed subjectAltName")
            names = _only(der, value[1], value[2], tag=_SEQUENCE)
            for name_tag, name_start, name_end in _children(der, *names):
                if name_tag == _URI:
                    uris.append(der[name_start:name_end].decode("ascii"))
    return uris
