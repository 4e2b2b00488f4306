"""Numbered issues (the ISO week becomes a label), review state, issue history, console
accounts and sessions.

Existing issues keep everything and are numbered #1, #2, … in the order they were
frozen; the issue counter starts after the highest number.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, digest.core.clock.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number", sa.Integer(), nullable=True))
        batch_op.add_column(_ts("scheduled_for", True))
        batch_op.add_column(
            sa.Column(
                "review",
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default="pending",
            )
        )
        batch_op.add_column(
            sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True)
        )
        batch_op.add_column(_ts("reviewed_at", True))
        batch_op.add_column(
            sa.Column("review_note", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True)
        )
        batch_op.drop_index("ix_issue_week")
        batch_op.create_index("ix_issue_week", ["week"], unique=False)

    conn = op.get_bind()
    issue = sa.table("issue", sa.column("id", sa.Integer), sa.column("number", sa.Integer))
    ids = conn.execute(sa.text("SELECT id FROM issue ORDER BY created_at, id")).scalars().all()
    for number, issue_id in enumerate(ids, start=1):
        conn.execute(sa.update(issue).where(issue.c.id == issue_id).values(number=number))

    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.alter_column("number", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_issue_number", ["number"], unique=True)

    op.create_table(
        "issue_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    counter = sa.table(
        "issue_counter", sa.column("id", sa.Integer), sa.column("last_number", sa.Integer)
    )
    conn.execute(sa.insert(counter).values(id=1, last_number=len(ids)))

    op.create_table(
        "issue_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        _ts("at", False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("issue_event", schema=None) as batch_op:
        batch_op.create_index("ix_issue_event_issue_id", ["issue_id"], unique=False)

    op.create_table(
        "console_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("setup_token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        _ts("setup_expires_at", True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        _ts("locked_until", True),
        _ts("last_login_at", True),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_user", schema=None) as batch_op:
        batch_op.create_index("ix_console_user_email", ["email"], unique=True)
        batch_op.create_index("ix_console_user_setup_token_hash", ["setup_token_hash"])

    op.create_table(
        "console_session",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        _ts("created_at", False),
        _ts("expires_at", False),
        _ts("last_seen_at", False),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["console_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.create_index("ix_console_session_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("console_session")
    op.drop_table("console_user")
    op.drop_table("issue_event")
    op.drop_table("issue_counter")
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_index("ix_issue_number")
        batch_op.drop_index("ix_issue_week")
        batch_op.create_index("ix_issue_week", ["week"], unique=True)
        for column in ("review_note", "reviewed_at", "reviewed_by", "review", "scheduled_for"):
            batch_op.drop_column(column)
        batch_op.drop_column("number")
