"""A certificate's SAN URIs read without the cryptography package (certificate_names.py),
checked against certificates that cryptography writes; and the identity check a service's own
certificate files must pass at start and at each reload (KeyPairFiles.identity)."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.certificate_names import certificate_uris, first_certificate_der
from services.common.config import ConfigError
from services.common.identity import ServiceIdentity, ServiceRole
from services.common.pki import create_pki, issue_certificate
from services.common.tls_reload import KeyPairFiles, ReloadingClientTls, WrongIdentity
from services.compute.settings import ComputeSettings

pytestmark = pytest.mark.timeout(30)


def certificate(
    *extensions: tuple[x509.ExtensionType, bool], key: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    """A self-signed certificate with these extensions (critical flag each), as PEM."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def san(*names: x509.GeneralName) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName(list(names))


def test_reads_every_uri_among_other_names() -> None:
    pem = certificate(
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            san(
                x509.DNSName("nova-grpc-internal"),
                x509.UniformResourceIdentifier("urn:nova-grpc:compute:node-7"),
                x509.RFC822Name("ops@example.org"),
                x509.UniformResourceIdentifier("spiffe://example.org/ns/x"),
            ),
            False,
        ),
    )
    assert certificate_uris(pem) == ["urn:nova-grpc:compute:node-7", "spiffe://example.org/ns/x"]


def test_a_critical_san_and_a_long_one_are_read_too() -> None:
    # critical: a BOOLEAN between the OID and the value; long: DER lengths in two bytes
    hosts = [f"urn:nova-grpc:compute:{'h' * 200}{i}" for i in range(3)]
    pem = certificate((san(*(x509.UniformResourceIdentifier(h) for h in hosts)), True))
    assert certificate_uris(pem) == hosts


def test_no_san_or_no_uri_is_no_uris() -> None:
    assert certificate_uris(certificate()) == []
    assert certificate_uris(certificate((san(x509.DNSName("a")), False))) == []


def test_the_first_certificate_of_a_chain_is_the_one_read() -> None:
    leaf = certificate((san(x509.UniformResourceIdentifier("urn:nova-grpc:api")), False))
    other = certificate((san(x509.UniformResourceIdentifier("urn:nova-grpc:conductor")), False))
    assert certificate_uris(leaf + other) == ["urn:nova-grpc:api"]


def test_what_pki_issues_names_its_identity(tmp_path: Path) -> None:
    create_pki(tmp_path, compute_hosts=["node-a"])
    identity = ServiceIdentity(ServiceRole.COMPUTE, "node-b")
    assert identity.uri in certificate_uris(issue_certificate(tmp_path, identity).read_bytes())
    assert certificate_uris((tmp_path / "compute.pem").read_bytes()) == [
        "urn:nova-grpc:compute:node-a"
    ]


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",  # SEQUENCE {}
        b"-----BEGIN CERTIFICATE-----\nMAUwAw==\n-----END CERTIFICATE-----\n",  # runs past
        b"-----BEGIN CERTIFICATE-----\nMIQ=\n-----END CERTIFICATE-----\n",  # bad length
    ],
)
def test_malformed_input_is_a_value_error(pem: bytes) -> None:
    with pytest.raises(ValueError):
        certificate_uris(pem)


def test_truncating_a_real_certificate_anywhere_is_a_value_error() -> None:
    der = first_certificate_der(
        certificate((san(x509.UniformResourceIdentifier("urn:nova-grpc:api")), False))
    )
    for cut in range(1, len(der), 7):
        pem = b"-----BEGIN CERTIFICATE-----\n%s-----END CERTIFICATE-----\n" % (
            base64.encodebytes(der[:cut])
        )
        with pytest.raises(ValueError):
            certificate_uris(pem)


# ---------------------------------------------------------------------------------------------
# the identity check on a service's own files


def files(pki: Path, stem: str, identity: ServiceIdentity | None) -> KeyPairFiles:
    return KeyPairFiles(
        pki / f"{stem}.pem", pki / f"{stem}-key.pem", client_ca=pki / "ca.pem", identity=identity
    )


def test_files_must_name_the_services_identity(tmp_path: Path) -> None:
    create_pki(tmp_path, compute_hosts=["node-a", "node-b"])
    node_a = ServiceIdentity(ServiceRole.COMPUTE, "node-a")
    files(tmp_path, "compute-node-a", node_a).check()
    files(tmp_path, "compute-node-b", None).check()  # no identity asked: not checked
    with pytest.raises(WrongIdentity, match=r"names urn:nova-grpc:compute:node-b, but this "
                       r"service is urn:nova-grpc:compute:node-a"):  # fmt: skip
        files(tmp_path, "compute-node-b", node_a).check()
    with pytest.raises(WrongIdentity, match="urn:nova-grpc:api"):
        files(tmp_path, "api", node_a).check()


def test_a_certificate_naming_no_role_is_refused_for_a_compute(tmp_path: Path) -> None:
    create_pki(tmp_path, compute_hosts=["node-a"])
    key = ec.generate_private_key(ec.SECP256R1())
    pem = certificate((san(x509.DNSName("nova-grpc-internal")), False), key=key)
    (tmp_path / "bare.pem").write_bytes(pem)
    (tmp_path / "bare-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(WrongIdentity, match="no nova-grpc identity"):
        KeyPairFiles(
            tmp_path / "bare.pem",
            tmp_path / "bare-key.pem",
            identity=ServiceIdentity(ServiceRole.COMPUTE, "node-a"),
        ).check()


def test_a_client_keeps_its_identity_when_a_rotation_names_another(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", compute_hosts=["node-a", "node-b"])
    live = tmp_path / "live"
    live.mkdir()
    for name in ("ca.pem", "compute-node-a.pem", "compute-node-a-key.pem"):
        (live / name).write_bytes((pki / name).read_bytes())
    node_a = ServiceIdentity(ServiceRole.COMPUTE, "node-a")
    client = ReloadingClientTls(
        live / "ca.pem",
        live / "compute-node-a.pem",
        live / "compute-node-a-key.pem",
        check_every=0,
        identity=node_a,
    )
    before = client.current()
    # a wrong "renewal": node-b's pair written over node-a's files
    (live / "compute-node-a.pem").write_bytes((pki / "compute-node-b.pem").read_bytes())
    (live / "compute-node-a-key.pem").write_bytes((pki / "compute-node-b-key.pem").read_bytes())
    assert client.current() is before and client.generation == 0
    # a right one is taken
    issue_certificate(pki, node_a)
    (live / "compute-node-a.pem").write_bytes((pki / "compute-node-a.pem").read_bytes())
    (live / "compute-node-a-key.pem").write_bytes((pki / "compute-node-a-key.pem").read_bytes())
    assert client.current() is not before and client.generation == 1


def test_a_compute_host_must_be_a_name_a_certificate_can_carry() -> None:
    tls = {"internal_tls_ca": "ca", "internal_tls_cert": "c", "internal_tls_key": "k"}
    with pytest.raises(ConfigError, match="setting host: must be a plain host name"):
        ComputeSettings(host="node:a", **tls)
    assert ComputeSettings(host="node-a.example", **tls).identity == ServiceIdentity(
        ServiceRole.COMPUTE, "node-a.example"
    )
    # no certificates, nothing to name it
    assert ComputeSettings(host="node:a", insecure_internal=True).host == "node:a"


def test_pki_cas_can_be_trusted_side_by_side(tmp_path: Path) -> None:
    """During a rotation old and new CA are trusted together: verifiers must not take one for
    the other, so each CA has a name of its own and certificates point at their CA's key."""
    cas, certificates = [], []
    for name in ("one", "two"):
        pki = create_pki(tmp_path / name, compute_hosts=["node-a"])
        cas.append(x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes()))
        certificates.append(x509.load_pem_x509_certificate((pki / "api.pem").read_bytes()))
    assert cas[0].subject != cas[1].subject
    for ca, cert in zip(cas, certificates, strict=True):
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        assert cert.issuer == ca.subject
