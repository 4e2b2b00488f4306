"""provider webhook events (bounces, complaints, deliveries), one row per event

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column(
            "provider_message_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True
        ),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("occurred_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "event_id", name="uq_mail_event_provider_event"),
    )
    with op.batch_alter_table("mail_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mail_event_subscriber", ["subscriber_id", "kind", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_mail_event_issue", ["issue_id", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mail_event", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_event_issue")
        batch_op.drop_index("ix_mail_event_subscriber")
    op.drop_table("mail_event")
