from collections import defaultdict

from tortoise import migrations
from tortoise.migrations import operations as ops
from salesinbox.core.db.models import AddressRole, DateSource
from salesinbox.core.db.thread_keys import join_threads, thread_ids
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# Until this version a message's thread_key was the parser's root id (its first References id,
# else In-Reply-To, else own Message-ID, else a subject key), so a reply whose References
# began with an unknown id was a thread apart, and threads never merged. Regroup every
# account's stored mail as the store now does (core/db/thread_keys.py) and record the ids it
# names in thread_node, so that the mail synced from now on joins these threads. The old key
# is each message's root: messages with one root are in one thread, so each old key maps to
# one new key.


def _placeholders(client, count: int, start: int = 1) -> list[str]:
    if client.capabilities.dialect == "postgres":
        return [f"${n}" for n in range(start, start + count)]
    return ["?"] * count


async def regroup_threads(apps, schema_editor) -> None:
    client = schema_editor.client
    p = _placeholders(client, 3)  # statements run many times: bound values, never text
    accounts = await client.execute_query_dict('SELECT DISTINCT "account_id" FROM "message"')
    for account_id in sorted(row["account_id"] for row in accounts):
        rows = await client.execute_query_dict(
            'SELECT "message_id", "in_reply_to", "references", "thread_key" FROM "message" '
            f'WHERE "account_id" = {_placeholders(client, 1)[0]} AND "thread_key" IS NOT NULL', [account_id])
        by_root = defaultdict(list)
        for row in rows:
            by_root[row["thread_key"]].append(thread_ids(
                row["thread_key"], row["message_id"], row["in_reply_to"], (row["references"] or "").split()))
        roots = sorted(by_root)
        messages, first_of = [], {}
        for root in roots:
            first_of[root] = len(messages)
            messages += by_root[root]
        if not messages:
            continue
        joined = join_threads(messages, {})
        new_key = {root: joined.keys[first_of[root]] for root in roots}
        await client.execute_many(
            f'UPDATE "message" SET "thread_key" = {p[0]} WHERE "account_id" = {p[1]} AND "thread_key" = {p[2]}',
            [[new_key[root], account_id, root] for root in roots])
        await client.execute_many(
            f'INSERT INTO "thread_node" ("account_id", "node", "thread_key") VALUES ({", ".join(p)})',
            [[account_id, node, key] for node, key in sorted(joined.new_nodes.items())])


class Migration(migrations.Migration):
    """Threads joined through every References id and merged by late mail (thread_node, every
    account's mail regrouped); message.date_source; the Sender kept as an address role."""

    dependencies = [('salesinbox', '0010_oauth_sign_in_launch')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ThreadNode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('salesinbox.MailAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='thread_nodes', on_delete=OnDelete.CASCADE)),
                ('node', fields.CharField(max_length=40)),
                ('thread_key', fields.CharField(max_length=998)),
            ],
            options={'table': 'thread_node', 'app': 'salesinbox', 'unique_together': (('account', 'node'),), 'indexes': [Index(fields=['account_id', 'thread_key'], name='thread_node_key_idx')], 'pk_attr': 'id', 'table_description': 'A Message-ID that some stored message of the account names (its own, In-Reply-To or'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Message',
            name='date_source',
            field=fields.CharEnumField(null=True, description='HEADER: HEADER\nINTERNALDATE: INTERNALDATE\nNONE: NONE', enum_type=DateSource, max_length=16),
        ),
        ops.AlterModelOptions(
            name='MessageAddress',
            options={'table': 'message_address', 'app': 'salesinbox', 'indexes': [Index(fields=['message_id', 'role'], name='message_address_message_idx'), Index(fields=['address'], name='message_address_address_idx'), Index(fields=['domain'], name='message_address_domain_idx')], 'pk_attr': 'id', 'table_description': "One address of a message's From/To/Cc/Bcc/Sender, normalised, with its domain."},
        ),
        ops.AlterField(
            model_name='MessageAddress',
            name='role',
            field=fields.CharEnumField(description='FROM: FROM\nTO: TO\nCC: CC\nBCC: BCC\nSENDER: SENDER', enum_type=AddressRole, max_length=8),
        ),
        # Backwards the keys stay as they are: the earlier code groups by key equality too.
        ops.RunPython(regroup_threads, ops.RunPython.noop),
    ]
