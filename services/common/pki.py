"""A throwaway internal CA and one certificate per role, for ``make run``, the tests and the
dev overlay; production brings its own from its CA (see tls.py for how they are used)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.tls import INTERNAL_NAME

ROLES = ("api", "conductor", "compute")


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


def create_pki(directory: Path, *, days: int = 365, extra_names: tuple[str, ...] = ()) -> Path:
    """A CA (``ca.pem``) and ``<role>.pem`` + ``<role>-key.pem`` for each role."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("nova-grpc internal CA")
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
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    names: list[x509.GeneralName] = [
        x509.DNSName(INTERNAL_NAME),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        *(x509.DNSName(n) for n in extra_names),
    ]
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"nova-grpc {role}"))
            .issuer_name(ca_name)
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
            .sign(ca_key, hashes.SHA256())
        )
        _write(directory / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(directory / f"{role}-key.pem", _pem_key(key), 0o600)
    return directory


def role_settings_env(directory: Path, role: str) -> dict[str, str]:
    """The environment that points a service of ``role`` at its certificate."""
    return {
        "NOVA_GRPC_INTERNAL_TLS_CA": str(directory / "ca.pem"),
        "NOVA_GRPC_INTERNAL_TLS_CERT": str(directory / f"{role}.pem"),
        "NOVA_GRPC_INTERNAL_TLS_KEY": str(directory / f"{role}-key.pem"),
    }
