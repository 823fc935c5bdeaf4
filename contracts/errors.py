"""Every exception Lianban raises on purpose, in one tree, classified by what happens next.

Business answers (不予受理, 补齐补正, denial) are results carried in messages, never
exceptions. Two kinds of "try again" exist, for two different things:

- `RetryableError` is about one call to a department system: the SDK calls again, with
  backoff, inside the delivery's budget (`adapters.RetryPolicy`); the message stays
  with the adapter meanwhile.
- `TransientError` is about Lianban's own infrastructure (broker, database, material
  store): the consumer holds the message in order, without spending a delivery, and
  tries it again with backoff until the dependency is back.

::

    LianbanError
    ├── ConfigurationError ....... a setting or a declaration is wrong: fix it, restart
    │   ├── UnknownYearError ..... no working-day calendar for a year: add its year file
    │   └── CalendarFileError .... a year file is malformed
    ├── CatalogError ............. the catalog data is inconsistent: fix the data
    ├── ContractError ............ a message or document breaks its contract: never retried
    │   └── MessageRefused ....... a consumed message is never to be processed: parked
    │       └── BadSignature ..... unsigned, signed by an untrusted key, or altered
    ├── MaterialError ............ a material cannot be stored or read as asked
    │   ├── MaterialRejected ..... an upload is not what it claims: kept nowhere
    │   │   └── MaterialTooLarge . it passed the size cap and was cut off there
    │   ├── MaterialMissing ...... nothing is stored under the digest: the item fails
    │   └── MaterialCorrupted .... what is stored differs from its reference: item fails
    ├── DepartmentError .......... a department call went wrong; `action` says what next
    │   ├── RetryableError ....... call again with backoff, inside the delivery's budget
    │   │   ├── CircuitOpenError . the endpoint's breaker is open: wait, do not call
    │   │   └── DepartmentUnavailable  every attempt of a delivery failed: retry it later
    │   ├── FatalDepartmentError . repeating the call cannot help: the item fails
    │   │   └── FilingWithdrawn .. the filing was withdrawn (撤回): an ordinary end
    │   └── BadAnswerError ....... the department answered something unreadable: fails
    │       └── AnswerTooLarge ... the answer passed the size cap and was dropped unread
    ├── TransientError ........... Lianban's own infrastructure is briefly away: hold, retry
    │   ├── StoreUnavailable ..... the material store did not answer (also a MaterialError)
    │   ├── PublishFailed ........ the broker did not confirm every message of a batch
    │   ├── ConsumerStalled ...... messages wait, yet the broker delivers none: reconnect
    │   └── QueuesUnavailable .... the broker's management API cannot be asked
    ├── CertificateLibraryUnavailable  the 电子证照库 did not answer in time: the cited
    │                                licences cannot be verified now (a one-time notice)
    └── ChainBroken .............. the audit log's hash chain does not verify
"""

from __future__ import annotations

from enum import StrEnum


class LianbanError(Exception):
    """Root of every exception Lianban raises on purpose."""


class ConfigurationError(LianbanError):
    """A setting or an adapter declaration is wrong; the message says how to fix it."""


class UnknownYearError(ConfigurationError):
    """No calendar for the year asked: add a year file or upgrade chinesecalendar."""


class CalendarFileError(ConfigurationError):
    """A year file is malformed; the message names the file and the entry."""


class CertificateLibraryUnavailable(LianbanError):
    """The certificate library (电子证照库) failed or did not answer within its timeout."""


class CatalogError(LianbanError):
    """The catalog data is inconsistent; the message names the file and entry."""


class ContractError(LianbanError):
    """A message or document does not satisfy its contract."""


class MessageRefused(ContractError):
    """A consumed message must never be processed (it breaks its contract, its signature
    is wrong, it names nothing we know). It is parked with `reason` for an operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadSignature(MessageRefused):
    """Unsigned, signed by an untrusted key, or altered after signing."""


class MaterialError(LianbanError):
    """A material could not be stored or read; the message says which and why."""


class MaterialRejected(MaterialError):
    """The upload is not what it claims to be; the message says why."""


class MaterialTooLarge(MaterialRejected):
    """The upload passed the size cap; it was cut off there."""


class MaterialMissing(MaterialError):
    """Nothing is stored under the digest."""


class MaterialCorrupted(MaterialError):
    """The stored bytes do not match the reference's size or SHA-256."""


class Action(StrEnum):
    """What the SDK does after a department call failed."""

    RETRY = "retry"
    FAIL = "fail"


class DepartmentError(LianbanError):
    """A department call went wrong; `action` says what the SDK does next."""

    action: Action = Action.FAIL


class RetryableError(DepartmentError):
    """Worth calling again: the department was busy, timed out or failed on its side."""

    action = Action.RETRY


class CircuitOpenError(RetryableError):
    """The endpoint failed repeatedly; calls are held back until it has had time to recover."""


class DepartmentUnavailable(RetryableError):
    """Every attempt of this delivery failed transiently: the message comes back after a
    delay (`runtime.messaging.delayed`) instead of failing the item."""


class FatalDepartmentError(DepartmentError):
    """Repeating the call cannot succeed (our request is wrong, the filing is refused)."""

    action = Action.FAIL


class FilingWithdrawn(FatalDepartmentError):
    """The department says the filing was withdrawn (撤回), ordinarily as the router
    asked: an ordinary end, logged as such, not as a fault."""


class BadAnswerError(DepartmentError):
    """The department answered something unreadable or outside its contract."""

    action = Action.FAIL


class AnswerTooLarge(BadAnswerError):
    """The department's answer passed the cap; what came was dropped unread."""


class TransientError(LianbanError):
    """Lianban's own infrastructure failed in a way that a later attempt may not."""


class StoreUnavailable(MaterialError, TransientError, ConnectionError):
    """The store did not answer or failed on its side; a later attempt may succeed."""


class PublishFailed(TransientError):
    """Not every message of a batch was confirmed; `confirmed[i]` tells which were."""

    def __init__(self, reason: str, confirmed: list[bool]) -> None:
        super().__init__(reason)
        self.confirmed = confirmed


class ConsumerStalled(TransientError):
    """Messages wait in the queue, the consumer has room, yet nothing arrives."""


class QueuesUnavailable(TransientError):
    """The broker (or its management API) could not be asked."""


class ChainBroken(LianbanError):
    """The audit log's hash chain does not verify where an operation needs it to."""
