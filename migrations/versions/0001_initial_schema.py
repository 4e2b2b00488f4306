"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 11:03:40.532237
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock


revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('standfirst', sa.Text(), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('published_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_published_at'), ['published_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_comparison_slug'), ['slug'], unique=True)

    op.create_table('issue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('week', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('cutoff', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('state_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('preheader', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('intro', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issue_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_issue_week'), ['week'], unique=True)

    op.create_table('subscriber',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.Column('unsubscribed_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_email'), ['email'], unique=True)
        batch_op.create_index(batch_op.f('ix_subscriber_status'), ['status'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('lease_expires_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.Column('provider_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('sent_at', digest.core.clock.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', digest.core.clock.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issue.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issue_id', 'subscriber_id')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_claim', ['issue_id', 'state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('issue_comparison',
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.ForeignKeyConstraint(['issue_id'], ['issue.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('issue_id', 'comparison_id')
    )
    with op.batch_alter_table('issue_comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issue_comparison_comparison_id'), ['comparison_id'], unique=False)

    op.create_table('tool',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('tagline', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('panel_ship_pct', sa.Integer(), nullable=True),
    sa.Column('community_pct', sa.Integer(), nullable=True),
    sa.Column('entry', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('comparison_id', 'position')
    )
    with op.batch_alter_table('tool', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tool_comparison_id'), ['comparison_id'], unique=False)

    op.create_table('review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tool_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('lens', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('quote', sa.Text(), nullable=False),
    sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.ForeignKeyConstraint(['tool_id'], ['tool.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tool_id', 'lens')
    )
    with op.batch_alter_table('review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_tool_id'), ['tool_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_tool_id'))

    op.drop_table('review')
    with op.batch_alter_table('tool', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tool_comparison_id'))

    op.drop_table('tool')
    with op.batch_alter_table('issue_comparison', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issue_comparison_comparison_id'))

    op.drop_table('issue_comparison')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_subscriber_id'))
        batch_op.drop_index('ix_delivery_claim')

    op.drop_table('delivery')
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_status'))
        batch_op.drop_index(batch_op.f('ix_subscriber_email'))

    op.drop_table('subscriber')
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issue_week'))
        batch_op.drop_index(batch_op.f('ix_issue_state'))

    op.drop_table('issue')
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_comparison_slug'))
        batch_op.drop_index(batch_op.f('ix_comparison_published_at'))

    op.drop_table('comparison')

