"""chatrooms.model, system_instruction, temperature, max_output_tokens: each room's reply settings

Revision ID: 0006_room_settings
Revises: 0005_message_usage
Create Date: 2026-12-03 14:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006_room_settings'
down_revision = '0005_message_usage'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('chatrooms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('system_instruction', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('temperature', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('max_output_tokens', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('chatrooms', schema=None) as batch_op:
        batch_op.drop_column('max_output_tokens')
        batch_op.drop_column('temperature')
        batch_op.drop_column('system_instruction')
        batch_op.drop_column('model')
