"""`lianban serve` over mutual TLS: LIANBAN_TLS_* settings, a client certificate required."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import AUTH, TEST_API_TOKEN

from contracts.catalog import Catalog
from lianban.settings import Settings
from lianban.stack import Role, Stack

Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def issue(name: str, issuer: Issued | None = None, *, server: bool = False) -> Issued:
    """A certificate for `name`, signed by `issuer` (self-signed CA when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def write(directory: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    certificate, key = issued
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_api_requires_a_client_certificate_when_a_client_ca_is_set(
    tmp_path: Path, catalog: Catalog
) -> None:
    ca = issue("Lianban test CA")
    ca_cert, _ = write(tmp_path, "ca", ca)
    server_cert, server_key = write(tmp_path, "server", issue("router", ca, server=True))
    client_cert, client_key = write(tmp_path, "platform", issue("platform", ca))
    stranger_cert, stranger_key = write(tmp_path, "stranger", issue("stranger", issue("other")))
    settings = Settings.from_env(
        {
            "LIANBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'intake.db'}",
            "LIANBAN_MATERIALS_DIR": str(tmp_path / "materials"),
            "LIANBAN_PORT": "0",
            "LIANBAN_TLS_CERTFILE": str(server_cert),
            "LIANBAN_TLS_KEYFILE": str(server_key),
            "LIANBAN_TLS_CA_CERTS": str(ca_cert),
        }
    )
    settings = settings.model_copy(update={"api_tokens": (TEST_API_TOKEN,)})

    def client_context(cert: Path | None, key: Path | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=ca_cert)
        if cert and key:
            context.load_cert_chain(cert, key)
        return context

    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        assert stack.base_url.startswith("https://")
        url = f"{stack.base_url}/v1/catalog"
        # Under test is who may connect, not how fast: httpx's default 5 s read timeout
        # expired once for the first request on a CI machine at load 11 (0.16 s at load 3).
        get = partial(httpx.get, url, headers=AUTH, timeout=60)
        answered = get(verify=client_context(client_cert, client_key))
        for cert, key in ((None, None), (stranger_cert, stranger_key)):
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                get(verify=client_context(cert, key))
    finally:
        stack.stop()
    assert answered.status_code == 200
