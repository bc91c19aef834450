"""messages.feedback: the user's rating of a reply

Revision ID: 0004_message_feedback
Revises: 0003_kept_session
Create Date: 2026-12-03 14:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004_message_feedback'
down_revision = '0003_kept_session'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feedback', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('feedback')
