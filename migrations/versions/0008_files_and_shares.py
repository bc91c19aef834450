"""files, message_attachments, shares: attachments stored in the database, and share links' snapshots

Revision ID: 0008_files_and_shares
Revises: 0007_message_tree
Create Date: 2026-12-03 16:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008_files_and_shares'
down_revision = '0007_message_tree'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        # AUTOINCREMENT: a deleted account's id is never given to a new one (PostgreSQL sequences never reuse).
        with op.batch_alter_table('users', recreate='always', table_kwargs={'sqlite_autoincrement': True}):
            pass
    op.create_table('files',
    sa.Column('id', BigId, nullable=False),
    sa.Column('user_id', BigId, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('mime_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_files_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('user_id', 'sha256', name='uq_files_user_id_sha256')
    )
    op.create_table('message_attachments',
    sa.Column('message_id', BigId, nullable=False),
    sa.Column('file_id', BigId, nullable=False),
    sa.Column('position', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_message_attachments_file_id_files')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_attachments_message_id_messages'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'file_id', name=op.f('pk_message_attachments'))
    )
    with op.batch_alter_table('message_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_attachments_file_id'), ['file_id'], unique=False)
    op.create_table('shares',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('chatroom_id', BigId, nullable=False),
    sa.Column('user_id', BigId, nullable=False),
    sa.Column('chatroom_name', sa.String(length=100), nullable=False),
    sa.Column('messages', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chatroom_id'], ['chatrooms.id'], name=op.f('fk_shares_chatroom_id_chatrooms'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_shares_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shares'))
    )
    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shares_chatroom_id'), ['chatroom_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shares_user_id'), ['user_id'], unique=False)


def downgrade():
    op.drop_table('shares')
    op.drop_table('message_attachments')
    op.drop_table('files')
