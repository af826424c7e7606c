"""A throwaway internal CA and one certificate per role, for ``make run``, the tests and the
dev overlay; production brings its own from its CA (see tls.py for how they are used)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.identity import ServiceIdentity, ServiceRole
from services.common.tls import INTERNAL_NAME

ROLES = tuple(role.value for role in ServiceRole)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nova-grpc"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.touch(mode=mode)
    path.chmod(mode)
    path.write_bytes(data)


def create_pki(
    directory: Path,
    *,
    days: int = 365,
    extra_names: tuple[str, ...] = (),
    compute_hosts: Sequence[str] = (),
) -> Path:
    """A CA (``ca.pem``, its key ``ca-key.pem``), ``api.pem`` and ``conductor.pem``, and
    ``compute-<host>.pem`` for each compute host (the first, by default this machine's name,
    also as ``compute.pem``); each ``<stem>.pem`` has its ``<stem>-key.pem``."""
    compute_hosts = tuple(compute_hosts) or (socket.gethostname(),)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # a name of its own (its creation time), so that a verifier trusting an old and a new CA
    # during a rotation never takes one for the other, even an old one without key identifiers
    ca_name = _name(f"nova-grpc internal CA {now:%Y-%m-%dT%H:%M:%S.%fZ}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Key identifiers (RFC 5280): every CA this makes has the same name, so while a
        # rotation trusts the old and the new CA together, verifiers tell them apart by these.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # Kept beside it (owner-only) so that `pki issue` can add a compute host later.
    _write(directory / "ca-key.pem", _pem_key(ca_key), 0o600)
    (directory / "names.txt").write_text("".join(f"{n}\n" for n in extra_names))
    issue_certificate(directory, ServiceIdentity(ServiceRole.API), days=days)
    issue_certificate(directory, ServiceIdentity(ServiceRole.CONDUCTOR), days=days)
    for index, host in enumerate(compute_hosts):
        identity = ServiceIdentity(ServiceRole.COMPUTE, host)
        issue_certificate(directory, identity, days=days)
        if index == 0:  # the fixed name single-host setups point at
            issue_certificate(directory, identity, days=days, stem="compute")
    return directory


def certificate_stem(identity: ServiceIdentity) -> str:
    """``api``, ``conductor`` or ``compute-<host>``: the files are <stem>.pem, <stem>-key.pem."""
    return f"{identity.role.value}-{identity.host}" if identity.host else identity.role.value


def issue_certificate(
    directory: Path, identity: ServiceIdentity, *, days: int = 365, stem: str = ""
) -> Path:
    """A certificate (and key) for ``identity`` signed by the CA in ``directory``; it names
    the identity in its subject and as a SAN URI, which the internal servers check."""
    ca_key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca-key.pem'} is not the EC key create_pki writes")
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    names_file = directory / "names.txt"
    extra = names_file.read_text().split() if names_file.exists() else []
    names: list[x509.GeneralName] = [
        x509.DNSName(INTERNAL_NAME),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        *(x509.DNSName(n) for n in extra),
        x509.UniformResourceIdentifier(identity.uri),
    ]
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"nova-grpc {identity}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    stem = stem or certificate_stem(identity)
    _write(directory / f"{stem}-key.pem", _pem_key(key), 0o600)
    _write(directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return directory / f"{stem}.pem"


def role_settings_env(directory: Path, role: str, *, host: str = "") -> dict[str, str]:
    """The environment that points a service of ``role`` at its certificate (a compute
    ``host`` at its own, issued now if the directory has none yet)."""
    stem = role
    if host:
        identity = ServiceIdentity(ServiceRole(role), host)
        stem = certificate_stem(identity)
        if not (directory / f"{stem}.pem").exists():
            issue_certificate(directory, identity)
    return {
        "NOVA_GRPC_INTERNAL_TLS_CA": str(directory / "ca.pem"),
        "NOVA_GRPC_INTERNAL_TLS_CERT": str(directory / f"{stem}.pem"),
        "NOVA_GRPC_INTERNAL_TLS_KEY": str(directory / f"{stem}-key.pem"),
    }
