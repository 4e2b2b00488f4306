"""Each reader's own digest: preferences (topics, frequency, time zone), compiled
variants per preference set, and click counts per issue link (never per reader).

Revision ID: 0012
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, digest.core.clock.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("topics", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "frequency",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                nullable=False,
                server_default="weekly",
            )
        )
        batch.add_column(
            sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("variant_id", sa.Integer(), nullable=True))
        batch.add_column(_ts("wave_at", True))

    op.create_table(
        "issue_variant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("topics", sa.Text(), nullable=True),
        sa.Column("frequency", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("comparisons", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "key", name="uq_issue_variant_key"),
    )
    with op.batch_alter_table("issue_variant") as batch:
        batch.create_index("ix_issue_variant_issue_id", ["issue_id"])

    op.create_table(
        "issue_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "comparison_id", "kind", "url", name="uq_issue_link"),
    )
    with op.batch_alter_table("issue_link") as batch:
        batch.create_index("ix_issue_link_issue_id", ["issue_id"])

    op.create_table(
        "click_count",
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        _ts("last_at", True),
        sa.ForeignKeyConstraint(["link_id"], ["issue_link.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("link_id"),
    )


def downgrade() -> None:
    op.drop_table("click_count")
    op.drop_table("issue_link")
    op.drop_table("issue_variant")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("wave_at")
        batch.drop_column("variant_id")
    with op.batch_alter_table("subscriber") as batch:
        for column in ("timezone", "frequency", "topics"):
            batch.drop_column(column)
