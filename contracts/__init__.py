"""What crosses a boundary of Lianban: messages, the HTTP application, the catalog, the topology.

This package imports nothing else of Lianban's; the router and the adapters both stand on it.
"""

SCHEMA_VERSION = "1.0"
