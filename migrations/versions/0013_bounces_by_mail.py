"""Bounces by mail: the source of each mail event (webhook, inbound, mailbox) and the
messages that came back for people (replies, unreadable notices).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("mail_event") as batch:
        batch.add_column(
            sa.Column("source", _text(10), nullable=False, server_default="webhook")
        )
    op.create_table(
        "inbound_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", _text(300), nullable=False),
        sa.Column("kind", _text(20), nullable=False),
        sa.Column("source", _text(10), nullable=False),
        sa.Column("sender", _text(320), nullable=False),
        sa.Column("subject", _text(300), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("forwarded_to", _text(320), nullable=True),
        sa.Column("forward_error", _text(500), nullable=True),
        sa.Column("received_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", name="uq_inbound_mail_report"),
    )
    op.create_index("ix_inbound_mail_received", "inbound_mail", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_mail_received", table_name="inbound_mail")
    op.drop_table("inbound_mail")
    with op.batch_alter_table("mail_event") as batch:
        batch.drop_column("source")
