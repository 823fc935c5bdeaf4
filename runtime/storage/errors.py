"""What can go wrong with a material, classified by what happens next.

MaterialError (contracts.errors.LianbanError)
├── MaterialRejected ...... an upload is not what it claims (type, digest, size): kept nowhere
│   └── MaterialTooLarge .. it passed the size cap and was cut off there
├── MaterialMissing ....... nothing is stored under the digest: the item fails
├── MaterialCorrupted ..... what is stored differs from its reference: the item fails
└── StoreUnavailable ...... the store cannot be reached now: retried (a ConnectionError)
"""

from __future__ import annotations

from contracts.errors import LianbanError, TransientError


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


class StoreUnavailable(MaterialError, TransientError, ConnectionError):
    """The store did not answer or failed on its side; a later attempt may succeed."""
