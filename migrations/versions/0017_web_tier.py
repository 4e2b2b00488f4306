"""The web tier across processes: shared request throttles and the hour's click
de-duplication (issue 28, issue 22 items 3 and 11).

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "throttle_window",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window"),
    )
    op.create_index("ix_throttle_window_expires", "throttle_window", ["expires"])
    op.create_table(
        "click_seen",
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_click_seen_hour", "click_seen", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_click_seen_hour", "click_seen")
    op.drop_table("click_seen")
    op.drop_index("ix_throttle_window_expires", "throttle_window")
    op.drop_table("throttle_window")
