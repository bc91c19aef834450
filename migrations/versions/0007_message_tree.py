"""The message tree and stop: messages.parent_id, chatrooms.active_leaf_id, messages.stop_requested_at; a
user message may have several replies (one pending at most); the quota day moves to the reply

Existing rooms read as one branch: each reply's parent is its user message, each user message's parent the reply
of the user message before it, and the active leaf is the newest exchange's reply.

Revision ID: 0007_message_tree
Revises: 0006_room_settings
Create Date: 2026-12-03 15:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007_message_tree'
down_revision = '0006_room_settings'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
PENDING = sa.text("status = 'pending'")


def upgrade():
    with op.batch_alter_table('chatrooms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active_leaf_id', BigId, nullable=True))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('stop_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_messages_parent_id_messages'), 'messages', ['parent_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.drop_constraint('uq_messages_reply_to', type_='unique')
        batch_op.create_index('ix_messages_parent_id', ['parent_id'], unique=False)
        batch_op.create_index('ix_messages_reply_to', ['reply_to'], unique=False)
    op.create_index('uq_messages_one_pending_reply', 'messages', ['reply_to'], unique=True,
                    postgresql_where=PENDING, sqlite_where=PENDING)

    # Plain correlated subqueries: the same SQL on PostgreSQL and SQLite.
    op.execute("UPDATE messages SET parent_id = reply_to WHERE role = 'model'")
    op.execute("""
        UPDATE messages SET parent_id = (
            SELECT r.id FROM messages r WHERE r.role = 'model' AND r.reply_to = (
                SELECT max(p.id) FROM messages p
                WHERE p.chatroom_id = messages.chatroom_id AND p.role = 'user' AND p.id < messages.id))
        WHERE role = 'user'""")
    op.execute("""
        UPDATE chatrooms SET active_leaf_id = (
            SELECT max(r.id) FROM messages r WHERE r.role = 'model' AND r.reply_to = (
                SELECT max(u.id) FROM messages u WHERE u.chatroom_id = chatrooms.id AND u.role = 'user'))""")
    op.execute("""
        UPDATE messages SET quota_day = (SELECT u.quota_day FROM messages u WHERE u.id = messages.reply_to)
        WHERE role = 'model'""")
    op.execute("UPDATE messages SET quota_day = NULL WHERE role = 'user'")


def downgrade():
    op.execute("""
        UPDATE messages SET quota_day = (
            SELECT max(r.quota_day) FROM messages r WHERE r.reply_to = messages.id AND r.role = 'model')
        WHERE role = 'user'""")
    # Only the first reply of each user message survives: the unique constraint allows no more.
    op.execute("""
        DELETE FROM messages WHERE role = 'model' AND id <> (
            SELECT min(r.id) FROM messages r WHERE r.reply_to = messages.reply_to)""")
    op.drop_index('uq_messages_one_pending_reply', table_name='messages')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_reply_to')
        batch_op.drop_index('ix_messages_parent_id')
        batch_op.create_unique_constraint(batch_op.f('uq_messages_reply_to'), ['reply_to'])
        batch_op.drop_constraint(batch_op.f('fk_messages_parent_id_messages'), type_='foreignkey')
        batch_op.drop_column('stop_requested_at')
        batch_op.drop_column('parent_id')
    with op.batch_alter_table('chatrooms', schema=None) as batch_op:
        batch_op.drop_column('active_leaf_id')
