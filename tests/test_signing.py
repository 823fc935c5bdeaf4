"""Signed messages: a forged, altered or unsigned message is parked with the reason and never
processed; keys rotate by id."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from harness import eventually, new_project_no, running_stack, signed
from kombu import Connection, Queue
from pydantic import TypeAdapter
from sqlalchemy import select

from adapters.simulated import Rule, Scenario
from adapters.testing.dispatches import dispatch_for
from contracts import topology
from contracts.catalog import Catalog
from contracts.errors import BadSignature, ConfigurationError
from contracts.messages import Decided, DepartmentMessage, ItemDispatch, ItemOutcome
from contracts.samples import sample_application
from lianban.adapter_process import message_keyring
from lianban.cli import main
from lianban.settings import Settings
from router.store import OutboxRow
from runtime.messaging import Outgoing, Publisher
from runtime.messaging.consumer import REFUSED_REASON_HEADER
from runtime.messaging.signing import (
    KEY_ID_HEADER,
    ROUTER_SIGNER,
    SIGNATURE_HEADER,
    Keyring,
    TrustedKey,
    new_key,
)

SERVICE = "birth_household_registration"
HRSS_SERVICE = "employee_social_insurance_enrolment"
DEPARTMENT_MESSAGE: TypeAdapter[DepartmentMessage] = TypeAdapter(DepartmentMessage)
IDS = {"message_id": "m-1", "correlation_id": "c-1"}


def test_a_signature_covers_the_body_and_the_ids() -> None:
    keyring = Keyring.ephemeral([ROUTER_SIGNER, "police"])
    headers = keyring.sign("police", body=b"{}", **IDS)
    assert keyring.verify(body=b"{}", headers=headers, **IDS) == "police"

    altered = [
        {"body": b'{"approved": true}', "headers": headers, **IDS},
        {"body": b"{}", "headers": headers, "message_id": "m-2", "correlation_id": "c-1"},
        {"body": b"{}", "headers": headers, "message_id": "m-1", "correlation_id": "c-2"},
        {"body": b"{}", "headers": {KEY_ID_HEADER: headers[KEY_ID_HEADER]}, **IDS},
        {"body": b"{}", "headers": {**headers, SIGNATURE_HEADER: "not base64!"}, **IDS},
        {"body": b"{}", "headers": {**headers, SIGNATURE_HEADER: _resized(headers, -1)}, **IDS},
        {"body": b"{}", "headers": {**headers, SIGNATURE_HEADER: _resized(headers, +1)}, **IDS},
    ]
    for fields in altered:
        with pytest.raises(BadSignature):
            keyring.verify(**fields)
    assert keyring.refusals == {"bad_signature": 6, "unsigned": 1}


def _resized(headers: dict[str, str], by: int) -> str:
    """The signature one byte shorter or longer: still base64, no longer 64 bytes."""
    signature = base64.b64decode(headers[SIGNATURE_HEADER])
    return base64.b64encode(signature[:by] if by < 0 else signature + b"{" * by).decode()


@pytest.mark.parametrize("message_id", ["m-1", 'quote " backslash \\', "办件\u2028\x00"])
def test_what_is_signed_stays_the_documented_bytes(message_id: str) -> None:
    """Messages signed before (recorded, or sent by an older process) keep verifying:
    the signed bytes are json.dumps of the version and the ids, a newline, the body."""
    private, trusted = new_key("police")
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    ids = json.dumps(["lianban-signature-v1", message_id, "c-1"]).encode()
    headers = {
        KEY_ID_HEADER: trusted.key_id,
        SIGNATURE_HEADER: base64.b64encode(key.sign(ids + b"\n{}")).decode(),
    }
    keyring = Keyring({}, [trusted])
    assert keyring.verify(body=b"{}", headers=headers, message_id=message_id, correlation_id="c-1")


@pytest.mark.parametrize("body", [b"{}", bytes(range(256)) * 6])
def test_libsodium_and_openssl_make_the_same_signature_and_verify_each_other(body: bytes) -> None:
    """Messages are signed and verified by libsodium: Ed25519 is deterministic, so OpenSSL
    (cryptography) signs the same bytes, and messages signed by an older process (OpenSSL)
    and by this one verify either way."""
    private, trusted = new_key("police")
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    keyring = Keyring({"police": key.private_bytes_raw()}, [trusted])
    signed_bytes = json.dumps(["lianban-signature-v1", *IDS.values()]).encode() + b"\n" + body

    by_libsodium = base64.b64decode(keyring.sign("police", body=body, **IDS)[SIGNATURE_HEADER])
    by_openssl = key.sign(signed_bytes)
    assert by_libsodium == by_openssl
    key.public_key().verify(by_libsodium, signed_bytes)  # raises InvalidSignature otherwise
    headers = {
        KEY_ID_HEADER: trusted.key_id,
        SIGNATURE_HEADER: base64.b64encode(by_openssl).decode(),
    }
    assert keyring.verify(body=body, headers=headers, **IDS) == "police"


def test_a_key_is_trusted_while_listed_and_refused_once_removed() -> None:
    old = Keyring.ephemeral(["police"])
    new = Keyring.ephemeral(["police"])
    signed_with_old = old.sign("police", body=b"{}", **IDS)
    (old_key,) = _trusted(old)
    (new_key_entry,) = _trusted(new)

    during_rotation = Keyring({}, [old_key, new_key_entry])
    assert during_rotation.verify(body=b"{}", headers=signed_with_old, **IDS) == "police"
    after_rotation = Keyring({}, [new_key_entry])
    with pytest.raises(BadSignature, match=f"key {old_key.key_id}, which is not trusted"):
        after_rotation.verify(body=b"{}", headers=signed_with_old, **IDS)
    assert after_rotation.refusals == {"unknown_key": 1}


def test_keys_load_from_a_directory_and_a_trusted_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    router_pem, router_public = new_key(ROUTER_SIGNER)
    (keys / "router.pem").write_bytes(router_pem)
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps([router_public.as_json()]))

    settings = Settings.from_env(
        {"LIANBAN_SIGNING_KEYS_DIR": str(keys), "LIANBAN_TRUSTED_KEYS": str(trusted)}
    )
    keyring = message_keyring(settings, ["police"])
    headers = keyring.sign(ROUTER_SIGNER, body=b"{}", **IDS)
    assert headers[KEY_ID_HEADER] == router_public.key_id
    assert keyring.verify(body=b"{}", headers=headers, **IDS) == ROUTER_SIGNER
    assert "BEGIN" not in repr(keyring)
    with pytest.raises(ConfigurationError, match="no signing key for 'police'"):
        keyring.sign("police", body=b"{}", **IDS)

    tampered = {**router_public.as_json(), "signer": "police", "key_id": "0" * 16}
    trusted.write_text(json.dumps([tampered]))
    with pytest.raises(ConfigurationError, match="does not match its public key"):
        Keyring.load(keys, trusted)


def test_key_files_are_openssl_s_pkcs8_and_nothing_else_loads(tmp_path: Path) -> None:
    """Key files are read without OpenSSL: one that OpenSSL (cryptography) wrote loads as
    the same key, and another kind of key, an encrypted one or a damaged file is refused
    by its name."""
    key = Ed25519PrivateKey.generate()
    (tmp_path / "police.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    trusted = TrustedKey("police", key.public_key().public_bytes_raw())
    keyring = Keyring.load(tmp_path, None)
    headers = keyring.sign("police", body=b"{}", **IDS)
    assert headers[KEY_ID_HEADER] == trusted.key_id
    assert Keyring({}, [trusted]).verify(body=b"{}", headers=headers, **IDS) == "police"

    encrypted = serialization.BestAvailableEncryption(b"secret")
    refused = [
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encrypted),
        X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        new_key("police")[0][:-40] + b"-----END PRIVATE KEY-----\n",
        b"police",
    ]
    for pem in refused:
        (tmp_path / "police.pem").write_bytes(pem)
        with pytest.raises(ConfigurationError, match=r"police\.pem is not an unencrypted Ed25519"):
            Keyring.load(tmp_path, None)


def _trusted(keyring: Keyring) -> list[TrustedKey]:
    return list(keyring._trusted().values())


# -- refused on the wire: parked with the reason, never processed --------------------------


def _dispatch_message(dispatch: ItemDispatch) -> Outgoing:
    return Outgoing(
        exchange=topology.DISPATCH_EXCHANGE,
        routing_key=topology.dispatch_routing_key(dispatch.department, dispatch.service),
        body=dispatch.model_dump_json().encode(),
        message_id=str(dispatch.message_id),
        correlation_id=str(dispatch.bundle_id),
    )


def _parked(broker_url: str, queue: str, ids: set[str], timeout: float = 30) -> dict[str, Any]:
    """The reason each of `ids` was parked with, waiting until all of them are."""
    reasons: dict[str, Any] = {}
    with Connection(broker_url) as connection:
        parking = Queue(topology.parking_queue(queue), no_declare=True)(connection.default_channel)

        def parked_so_far() -> set[str]:
            while (message := parking.get(no_ack=True)) is not None:
                message_id = message.properties.get("message_id")
                if message_id in ids:
                    reasons[message_id] = (message.headers or {})[REFUSED_REASON_HEADER]
            return set(reasons)

        eventually(
            parked_so_far,
            lambda parked: parked == ids,
            timeout=timeout,
            message=f"not all of {sorted(ids)} were parked",
        )
    return reasons


def test_forged_altered_and_unsigned_dispatches_are_parked_not_filed(
    settings: Settings, catalog: Catalog
) -> None:
    forger = Keyring.ephemeral([ROUTER_SIGNER])  # calls itself the router, but nobody trusts it
    with running_stack(settings, catalog) as running:
        keyring = running.stack.keyring
        forged = _dispatch_message(dispatch_for(SERVICE, department="police"))
        unsigned = _dispatch_message(dispatch_for(SERVICE, department="police"))
        original = _dispatch_message(dispatch_for(SERVICE, department="police"))
        altered = dataclasses.replace(
            signed(original, keyring=keyring), body=original.body.replace(b"police", b"POLICE")
        )
        misrouted = _dispatch_message(dispatch_for(HRSS_SERVICE, department="hrss"))
        misrouted = dataclasses.replace(misrouted, routing_key=forged.routing_key)
        genuine = _dispatch_message(dispatch_for(SERVICE, department="police"))
        with Publisher(running.stack.broker) as publisher:
            publisher.publish_many(
                [
                    signed(forged, keyring=forger),
                    unsigned,
                    altered,
                    signed(misrouted, keyring=keyring),
                    signed(genuine, keyring=keyring),
                ]
            )
        refused = {m.message_id for m in (forged, unsigned, altered, misrouted)}
        reasons = _parked(settings.broker_url, topology.department_queue("police"), refused)
        eventually(
            lambda: genuine.correlation_id in _decided_bundles(running),
            timeout=30,
            message="the genuine dispatch was not decided",
        )

    assert "which is not trusted" in reasons[forged.message_id]
    assert reasons[unsigned.message_id] == "the message carries no signature"
    assert reasons[altered.message_id] == "the signature by router does not match"
    assert reasons[misrouted.message_id] == "a message for hrss on police's queue"
    refused_bundles = {m.correlation_id for m in (forged, unsigned, altered, misrouted)}
    assert not refused_bundles & _decided_bundles(running)
    assert keyring.refusals == {"unknown_key": 1, "unsigned": 1, "bad_signature": 1}


def test_a_forged_outcome_is_parked_and_the_item_does_not_move(
    settings: Settings, catalog: Catalog
) -> None:
    slow = Scenario(default=Rule(delay_seconds=60))  # real decisions never come in time
    with running_stack(settings, catalog, scenario=slow) as running:
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        receipt = running.submit(application).json()
        dispatch = _dispatch_of(running, receipt["bundle_id"], "birth_medical_certificate")
        approval = ItemOutcome.answering(dispatch, Decided(approved=True))
        message = Outgoing(
            exchange=topology.OUTCOMES_EXCHANGE,
            routing_key=topology.outcome_routing_key(dispatch.department),
            body=approval.model_dump_json().encode(),
            message_id=str(approval.message_id),
            correlation_id=str(approval.bundle_id),
        )
        keyring = running.stack.keyring
        by_hrss = signed(dataclasses.replace(message, message_id="hrss-says"), "hrss", keyring)
        forged = signed(message, dispatch.department, Keyring.ephemeral([dispatch.department]))
        with Publisher(running.stack.broker) as publisher:
            publisher.publish_many([forged, by_hrss])
        reasons = _parked(
            settings.broker_url, topology.OUTCOMES_QUEUE, {forged.message_id, "hrss-says"}
        )
        after = _item_state(running, receipt["status_url"], dispatch.item)

    assert "which is not trusted" in reasons[forged.message_id]
    assert reasons["hrss-says"] == "an outcome of health signed by hrss"
    assert after in ("dispatched", "accepted")  # the simulator's receipt, not the forgery


def _dispatch_of(running: Any, bundle_id: str, item: str) -> ItemDispatch:
    with running.stack.database.transaction() as session:
        bodies = session.scalars(
            select(OutboxRow.body).where(OutboxRow.correlation_id == bundle_id)
        ).all()
    return next(
        message
        for message in map(DEPARTMENT_MESSAGE.validate_json, bodies)
        if isinstance(message, ItemDispatch) and message.item == item
    )


def _decided_bundles(running: Any) -> set[str]:
    return {str(record.bundle_id) for record in running.ledger.records()}


def _item_state(running: Any, status_url: str, item: str) -> str:
    items = running.client.get(status_url).json()["items"]
    return str(next(entry["state"] for entry in items if entry["item"] == item))


def test_lianban_keys_new_writes_a_private_key_and_prints_its_trusted_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "new", "police", "--into", str(tmp_path)]) == 0
    entry = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (tmp_path / "police.pem").stat().st_mode & 0o077 == 0  # private to its owner
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps([entry]))
    keyring = Keyring.load(tmp_path, trusted)
    headers = keyring.sign("police", body=b"{}", **IDS)
    assert keyring.verify(body=b"{}", headers=headers, **IDS) == "police"
    assert main(["keys", "new", "police", "--into", str(tmp_path)]) == 2  # never overwritten
