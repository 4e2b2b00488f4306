"""consent log, suppression list, single-use confirmation links

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUPPRESSED = ("unsubscribed", "bounced", "complained")


def _hash(email: str) -> str:
    # Must equal subscribers.consent.email_hash (kept inline: migrations never import
    # code that may change after them).
    return hashlib.sha256(b"weekly-verdict-digest:" + email.strip().lower().encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("confirm_nonce", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("confirm_sent_at", digest.core.clock.UTCDateTime(timezone=True), nullable=True)
        )

    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_event_subscriber_id"), ["subscriber_id"], unique=False
        )

    suppression = op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suppression_email_hash"), ["email_hash"], unique=True)

    # Addresses suppressed before this revision join the list.
    conn = op.get_bind()
    subscriber = sa.table("subscriber", sa.column("email"), sa.column("status"))
    rows = conn.execute(
        sa.select(subscriber.c.email, subscriber.c.status).where(
            subscriber.c.status.in_(SUPPRESSED)
        )
    ).all()
    if rows:
        now = datetime.now(UTC)
        op.bulk_insert(
            suppression,
            [
                {"email_hash": _hash(email), "reason": status, "source": "migration 0002",
                 "created_at": now}
                for email, status in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppression_email_hash"))
    op.drop_table("suppression")
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_event_subscriber_id"))
    op.drop_table("consent_event")
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch table copy: recreating
    # "subscriber" would drop the old table, and with foreign keys on that cascades
    # to every delivery row.
    op.drop_column("subscriber", "confirm_sent_at")
    op.drop_column("subscriber", "confirm_nonce")
