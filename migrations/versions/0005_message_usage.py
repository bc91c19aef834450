"""messages.usage: Gemini's token counts of a finished reply

Revision ID: 0005_message_usage
Revises: 0004_message_feedback
Create Date: 2026-12-03 14:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0005_message_usage'
down_revision = '0004_message_feedback'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usage', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('usage')
