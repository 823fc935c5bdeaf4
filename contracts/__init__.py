"""What crosses a boundary of Lianban: messages, the HTTP application, the catalog, the topology.

This package imports nothing else of Lianban's; the router and the adapters both stand on it.
"""

from typing import Final, Literal

SchemaVersion = Literal["1.0"]
SCHEMA_VERSION: Final[SchemaVersion] = "1.0"
