"""Merge the subscriber and mail-event branches; indexes that keep claiming O(batch).

Revision ID: 0005
Revises: 0002, 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0002", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_queue", ["issue_id", "state", "id"], unique=False)
        batch_op.create_index("ix_delivery_lease_owner", ["lease_owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_lease_owner")
        batch_op.drop_index("ix_delivery_queue")
