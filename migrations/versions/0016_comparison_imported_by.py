"""The ingest API: who brought each comparison in (an ingest token's name, a console
account, the CLI).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD / DROP COLUMN, not batch mode: on SQLite a batch re-creates the table, and
    # dropping the old comparison table would cascade to the issues that featured it.
    op.add_column(
        "comparison",
        sa.Column("imported_by", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("comparison", "imported_by")
