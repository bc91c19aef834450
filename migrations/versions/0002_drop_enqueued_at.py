"""drop messages.enqueued_at: written on every post, read by nothing (the sweeper works from leases)

Revision ID: 0002_drop_enqueued_at
Revises: 0001_initial
Create Date: 2026-11-23 15:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002_drop_enqueued_at'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('enqueued_at')


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True))
