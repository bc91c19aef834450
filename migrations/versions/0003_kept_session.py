"""users.kept_session_id: the session that goes on through a password change

Revision ID: 0003_kept_session
Revises: 0002_drop_enqueued_at
Create Date: 2026-12-02 21:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003_kept_session'
down_revision = '0002_drop_enqueued_at'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kept_session_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('kept_session_id')
