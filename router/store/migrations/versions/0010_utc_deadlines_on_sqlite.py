"""utc deadlines on sqlite: move deadlines stored as +08:00 wall clock to UTC

Before this revision `UtcDateTime` passed aware values to the database unchanged.
PostgreSQL (timestamptz) kept the instant; SQLite stores a datetime as text without an
offset, so a +08:00 value was stored as its China wall clock and read back as UTC:
8 hours late. Nothing to do on PostgreSQL.

Assumption, from the code before this revision: the only +08:00 values ever stored were
the items' deadlines (`accept_due_at`, `decide_due_at`), each the end of a China day
(`router.domain.workdays.end_of_day`), stored as `YYYY-MM-DD 23:59:59.999999`; every
other column was written from `datetime.now(UTC)`. Such a deadline is the same
instant as `YYYY-MM-DD 15:59:59.999999` UTC (the same date), which is what the
current code stores, so this revision matches the first form exactly and rewrites it to
the second: a value in UTC never ends in 23:59:59.999999 unless it came from +08:00, and
running it twice changes nothing.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CHINA_END_OF_DAY = " 23:59:59.999999"  # 24:00 in China less a microsecond
UTC_END_OF_CHINA_DAY = " 15:59:59.999999"  # the same instant in UTC
DEADLINES = ("accept_due_at", "decide_due_at")


def upgrade() -> None:
    _rewrite(CHINA_END_OF_DAY, UTC_END_OF_CHINA_DAY)


def downgrade() -> None:
    _rewrite(UTC_END_OF_CHINA_DAY, CHINA_END_OF_DAY)


def _rewrite(old_time: str, new_time: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for column in DEADLINES:
        op.execute(
            f"UPDATE items SET {column} = substr({column}, 1, 10) || '{new_time}' "
            f"WHERE {column} LIKE '%{old_time}'"
        )
