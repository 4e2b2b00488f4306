"""A feed id per issue: Atom entry ids that survive a domain move.

Revision ID: 0009
Revises: 0007

An entry id made from the archive URL changes when DIGEST_BASE_URL does, and every
feed reader then shows every issue again as new. Each issue gets a ``urn:uuid:`` id,
made once and stored; existing issues get theirs here.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("feed_id", sa.String(length=64), nullable=True))
    issue = sa.table("issue", sa.column("id", sa.Integer), sa.column("feed_id", sa.String))
    conn = op.get_bind()
    for (issue_id,) in conn.execute(sa.select(issue.c.id)).all():
        conn.execute(
            sa.update(issue)
            .where(issue.c.id == issue_id)
            .values(feed_id=f"urn:uuid:{uuid.uuid4()}")
        )
    with op.batch_alter_table("issue") as batch:
        batch.alter_column("feed_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_issue_feed_id", ["feed_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_index("ix_issue_feed_id")
        batch.drop_column("feed_id")
