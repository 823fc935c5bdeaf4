"""New keys are time-ordered UUIDs (version 7): each one sorts after every earlier one,
in Python and in PostgreSQL's byte order alike, and none repeats however fast they come."""

from __future__ import annotations

import time
import uuid

from contracts.ids import new_id


def test_a_new_id_is_a_version_7_uuid_of_the_current_millisecond() -> None:
    previous_ms = new_id().int >> 80
    before_ms = time.time_ns() // 1_000_000
    made = new_id()
    after_ms = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    # The first 48 bits are the milliseconds since the epoch, or the millisecond after
    # the previous id's when ids come faster than that (a burst, in another test of this
    # process, may have moved it seconds ahead).
    assert max(before_ms, previous_ms + 1) <= made.int >> 80 <= max(after_ms, previous_ms + 1)


def test_a_burst_of_ids_is_unique_and_in_the_order_they_were_made() -> None:
    burst = [new_id() for _ in range(20_000)]
    assert len(set(burst)) == len(burst)
    assert sorted(burst) == burst
    # PostgreSQL orders uuid values by their bytes, and their text sorts the same way.
    assert sorted(burst, key=lambda made: made.bytes) == burst
    assert sorted(burst, key=str) == burst
    assert all(made.version == 7 for made in burst)
