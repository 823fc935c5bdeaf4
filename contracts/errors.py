"""Lianban's one root exception and its tree.

Errors are classified by what happens next. Business rejections (不予受理, 补正, denial)
are results carried in messages, never exceptions.

    LianbanError
    ├── CatalogError ............ the catalog data is inconsistent: fix the data, nothing retries
    ├── ContractError ........... a message or document breaks its contract: reject it, never retry
    ├── ConfigurationError ...... a setting or a declaration is wrong: fix it and restart
    └── TransientError .......... a dependency is briefly unavailable: retry with backoff
"""


class LianbanError(Exception):
    """Root of every exception Lianban raises on purpose."""


class CatalogError(LianbanError):
    """The catalog data is inconsistent; the message names the file and entry."""


class ContractError(LianbanError):
    """A message or document does not satisfy its contract."""


class ConfigurationError(LianbanError):
    """A setting or an adapter declaration is wrong; the message says how to fix it."""


class TransientError(LianbanError):
    """A dependency failed in a way that a later attempt may not."""
