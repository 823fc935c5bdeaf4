"""Standard Webhooks signatures (https://www.standardwebhooks.com) on what the router pushes.

Each push carries three headers:

    webhook-id          the pushed message's id: the same on every retry of that push, so
                        the receiver can drop one it has already processed
    webhook-timestamp   when this attempt was sent, in whole seconds since the epoch
    webhook-signature   v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

under a secret written `whsec_<base64 of 24 to 64 random bytes>`. How a receiver checks
them and refuses replays: docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from pydantic import SecretStr

PREFIX = "whsec_"


class BadWebhookSecret(ValueError):
    """The secret is not `whsec_` and the base64 of at least 24 bytes."""


def new_secret() -> SecretStr:
    return SecretStr(PREFIX + base64.b64encode(secrets.token_bytes(32)).decode())


def secret_key(secret: SecretStr) -> bytes:
    """The HMAC key a `whsec_…` secret stands for."""
    text = secret.get_secret_value().strip()
    if not text.startswith(PREFIX):
        raise BadWebhookSecret(f"a webhook secret starts with {PREFIX}")
    try:
        key = base64.b64decode(text.removeprefix(PREFIX), validate=True)
    except ValueError:
        raise BadWebhookSecret("a webhook secret is whsec_ and base64") from None
    if len(key) < 24:
        raise BadWebhookSecret(f"a webhook secret needs at least 24 bytes, not {len(key)}")
    return key


def signature_headers(key: bytes, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
