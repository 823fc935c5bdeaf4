"""Signed messages: proof of who sent each one, checked before anything is processed.

Every message the router publishes (dispatch, supplement, cancel, …) is signed by the
router's key, and every outcome by its department's key — Ed25519, so a verifier holds
only public keys and a recorded message proves its sender. A consumer refuses a message
that is unsigned, signed by a key it does not trust, or altered after signing: it is
parked with the reason (`BadSignature` is a `MessageRefused`) and never processed.

What is signed: the message id, the correlation id and the body (which names the
department and the kind). Not signed: the headers the broker and the delayed-retry path
rewrite (delivery count, x-death, retry counters).

A key is named by its id, the first 16 hex digits of the SHA-256 of its raw public key.
Verifiers accept every key they trust, so keys rotate without a stop: trust the new
key, switch the signer to it, and drop the old key once no message signed by it is left.

Each message is signed and verified by libsodium (PyNaCl) with raw keys: the same
deterministic Ed25519 signatures as OpenSSL's, for 0.55 of its instructions to sign and
verify one (1.1 M against 2.0 M, callgrind, a 1,500-byte body). Key files are PEM,
PKCS #8, as OpenSSL writes them, read and written here: OpenSSL's bindings
(`cryptography`) would add some 9 MiB to every process that only loads its keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, NoReturn

import structlog
from nacl.bindings import (
    crypto_sign,
    crypto_sign_BYTES,
    crypto_sign_open,
    crypto_sign_PUBLICKEYBYTES,
    crypto_sign_seed_keypair,
    crypto_sign_SEEDBYTES,
)
from nacl.exceptions import BadSignatureError

from contracts.errors import BadSignature, ConfigurationError
from runtime.messaging.envelope import Delivery
from runtime.reloading import ReloadingFile

SIGNATURE_HEADER = "x-lianban-signature"
KEY_ID_HEADER = "x-lianban-key-id"
ROUTER_SIGNER = "router"
"""The signer name of the router's own key; departments sign under their code."""
# An Ed25519 private key in PKCS #8 (RFC 8410, section 7) is this DER prefix and the
# key's 32-byte seed: what OpenSSL and `lianban keys new` write, one line of base64.
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
PEM_PRIVATE_KEY = re.compile(
    rb"\s*-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----\s*"
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrustedKey:
    signer: str
    public_key: bytes
    """Its raw 32 bytes: what its id hashes and libsodium verifies with."""

    @cached_property
    def key_id(self) -> str:  # a hash: computed once, not for each message verified
        return key_id(self.public_key)

    def as_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "signer": self.signer,
            "public_key": base64.b64encode(self.public_key).decode(),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, str]) -> TrustedKey:
        raw = base64.b64decode(entry["public_key"], validate=True)
        if len(raw) != crypto_sign_PUBLICKEYBYTES:
            raise ValueError(f"an Ed25519 public key has {crypto_sign_PUBLICKEYBYTES} bytes")
        trusted = cls(entry["signer"], raw)
        if entry.get("key_id", trusted.key_id) != trusted.key_id:
            raise ValueError(f"key_id {entry['key_id']} does not match its public key")
        return trusted


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def public_key(seed: bytes) -> bytes:
    """The raw public key of the private key whose 32-byte seed is `seed`."""
    return crypto_sign_seed_keypair(seed)[0]


class Keyring:
    """The private keys this process signs with (by signer) and the public keys it trusts.

    `refusals` counts refused messages by reason, for the operator's metrics.
    """

    def __init__(
        self,
        signing: Mapping[str, bytes],
        trusted: Iterable[TrustedKey] | ReloadingFile[list[TrustedKey]],
    ) -> None:
        """`signing`: each signer's private key, its 32-byte seed."""
        # Each signing key as libsodium takes it (the seed followed by the public key), with
        # its id, which every signed message carries.
        self._signing = {}
        for signer, seed in signing.items():
            public, secret_key = crypto_sign_seed_keypair(seed)
            self._signing[signer] = (secret_key, key_id(public))
        self._trusted_file = trusted if isinstance(trusted, ReloadingFile) else None
        self._trusted_keys = list(trusted) if not isinstance(trusted, ReloadingFile) else []
        # The trusted keys by id, indexed again only when the list read from the file changes.
        self._indexed: tuple[list[TrustedKey], dict[str, TrustedKey]] | None = None
        self.refusals: Counter[str] = Counter()

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring(signs_as={sorted(self._signing)}, trusts={sorted(self._trusted())})"

    def _trusted(self) -> dict[str, TrustedKey]:
        """The trusted keys by id; from a file, as it is now (a revoked key is refused
        within a minute, `runtime.reloading`)."""
        keys = self._trusted_file.current() if self._trusted_file else self._trusted_keys
        if self._indexed is None or self._indexed[0] is not keys:
            self._indexed = (keys, {key.key_id: key for key in keys})
        return self._indexed[1]

    @classmethod
    def ephemeral(cls, signers: Iterable[str]) -> Keyring:
        """Fresh keys for `signers`, each trusted: for processes that talk only to
        themselves (the embedded demo, tests, `run-all`)."""
        signing = {signer: secrets.token_bytes(crypto_sign_SEEDBYTES) for signer in signers}
        return cls(signing, [TrustedKey(s, public_key(seed)) for s, seed in signing.items()])

    @classmethod
    def load(cls, signing_dir: Path | None, trusted_file: Path | None) -> Keyring:
        """Private keys from `signing_dir` (`<signer>.pem`, PKCS #8) and trusted public
        keys from `trusted_file` (a JSON list of `TrustedKey.as_json` entries)."""
        signing: dict[str, bytes] = {}
        for path in sorted(signing_dir.glob("*.pem")) if signing_dir else []:
            seed = _pkcs8_seed(path.read_bytes())
            if seed is None:
                raise ConfigurationError(
                    f"{path} is not an unencrypted Ed25519 private key (PEM, PKCS #8)"
                )
            signing[path.stem] = seed
        return cls(signing, ReloadingFile(trusted_file, read_trusted_keys) if trusted_file else [])

    def sign(
        self, signer: str, *, body: bytes, message_id: str, correlation_id: str
    ) -> dict[str, str]:
        """The headers that carry `signer`'s signature of this message."""
        signing = self._signing.get(signer)
        if signing is None:
            raise ConfigurationError(f"no signing key for {signer!r} in this process")
        secret_key, signing_key_id = signing
        signed_message = crypto_sign(_signed_bytes(body, message_id, correlation_id), secret_key)
        signature = signed_message[:crypto_sign_BYTES]  # libsodium puts it before the message
        return {
            KEY_ID_HEADER: signing_key_id,
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }

    def verify(
        self, *, body: bytes, headers: Mapping[str, Any], message_id: str, correlation_id: str
    ) -> str:
        """The signer of a message signed by a trusted key; raises BadSignature otherwise."""
        presented_id, signature = headers.get(KEY_ID_HEADER), headers.get(SIGNATURE_HEADER)
        if not presented_id or not signature:
            self._refuse("unsigned", "the message carries no signature")
        trusted = self._trusted().get(str(presented_id))
        if trusted is None:
            self._refuse("unknown_key", f"signed by key {presented_id}, which is not trusted")
        signed_bytes = _signed_bytes(body, message_id, correlation_id)
        if not _verifies(str(signature), signed_bytes, trusted.public_key):
            self._refuse("bad_signature", f"the signature by {trusted.signer} does not match")
        return trusted.signer

    def verify_delivery(self, delivery: Delivery) -> str:
        """`verify` for a received message (its headers and its AMQP ids)."""
        return self.verify(
            body=delivery.body,
            headers=delivery.headers,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
        )

    def _refuse(self, kind: str, reason: str) -> NoReturn:
        self.refusals[kind] += 1
        log.error("signature.refused", kind=kind, reason=reason)
        raise BadSignature(reason)


def read_trusted_keys(path: Path) -> list[TrustedKey]:
    """A trusted keys file: a JSON list of `TrustedKey.as_json` entries."""
    try:
        return [TrustedKey.from_json(entry) for entry in json.loads(path.read_text("utf-8"))]
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as error:
        raise ConfigurationError(f"cannot read trusted keys {path}: {error}") from None


def _pkcs8_seed(pem: bytes) -> bytes | None:
    """The seed of the Ed25519 private key a PEM file holds; None for anything else (another
    kind of key, an encrypted one, not PEM)."""
    found = PEM_PRIVATE_KEY.fullmatch(pem)
    if found is None:
        return None
    try:
        der = base64.b64decode(b"".join(found[1].split()), validate=True)
    except binascii.Error:
        return None
    prefix, seed = der[: len(PKCS8_ED25519_PREFIX)], der[len(PKCS8_ED25519_PREFIX) :]
    if prefix != PKCS8_ED25519_PREFIX or len(seed) != crypto_sign_SEEDBYTES:
        return None
    return seed


def _verifies(signature: str, signed_bytes: bytes, public_key: bytes) -> bool:
    """Whether `signature` (base64) is `public_key`'s signature of `signed_bytes`."""
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:  # not base64 (binascii.Error), or not ASCII
        return False
    # libsodium takes the signature and the message joined: one of another length would
    # move the boundary between them.
    if len(raw_signature) != crypto_sign_BYTES:
        return False
    try:
        crypto_sign_open(raw_signature + signed_bytes, public_key)
    except BadSignatureError:
        return False
    return True


def _signed_bytes(body: bytes, message_id: str, correlation_id: str) -> bytes:
    # JSON for the ids keeps the boundary between fields unambiguous: the bytes of
    # json.dumps(["lianban-signature-v1", message_id, correlation_id]), written out with
    # its own string encoder (a tenth of json.dumps's time, twice for every message).
    ids = f"{encode_basestring_ascii(message_id)}, {encode_basestring_ascii(correlation_id)}"
    return f'["lianban-signature-v1", {ids}]\n'.encode() + body


def new_key(signer: str) -> tuple[bytes, TrustedKey]:
    """A fresh private key for `signer` (PKCS #8 PEM, to keep secret) and the entry
    verifiers add to their trusted keys."""
    seed = secrets.token_bytes(crypto_sign_SEEDBYTES)
    encoded = base64.b64encode(PKCS8_ED25519_PREFIX + seed).decode()
    pem = f"-----BEGIN PRIVATE KEY-----\n{encoded}\n-----END PRIVATE KEY-----\n".encode()
    return pem, TrustedKey(signer, public_key(seed))
