"""Keys for new rows and messages: time-ordered UUIDs (version 7, RFC 9562).

Bundles, items, events, messages and notices are indexed by such keys in B-trees that
grow by the million as finished bundles pile up. A random (version 4) key lands on a
random leaf of each index: a page likely out of PostgreSQL's buffers, and, for the first
change after each checkpoint, a whole 8 KiB page image in the WAL. A version 7 key starts
with the time in milliseconds, so new keys land on the rightmost leaves, which stay in
memory. It is still a UUID, 74 of its bits random: the columns and the wire keep their type.
"""

from __future__ import annotations

from uuid import UUID

import uuid6


def new_id() -> UUID:
    """A version 7 UUID, greater than every one this thread made before: uuid6 moves its
    millisecond ahead by one when ids are asked for faster than that. Threads asking at
    the same moment may share a millisecond; the random bits keep their ids apart."""
    return uuid6.uuid7()
