"""Sync control and monitoring: sync now, completeness audit and backfill, live events."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from datetime import datetime

import strawberry

from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.mail_accounts.accounts import get_account
from salesinbox.core.scale_out.fencing import exclusive_sync
from salesinbox.core.sync.audit import FolderAudit, audit_account
from salesinbox.core.sync.events import MailEvent

from .accounts import MailAccountType
from .context import Info
from .ids import parse_id, to_id
from .scalars import BigInt


@strawberry.type(description="A message on the server that the store does not hold.")
class MissingMessageType:
    uid: BigInt
    message_id: str
    subject: str
    date: str


@strawberry.type(name="FolderAudit", description="Server against store for one folder.")
class FolderAuditType:
    folder: str
    on_server: int
    stored: int
    missing_count: int
    extra_count: int
    coverage: float
    backfilled: int
    missing: list[MissingMessageType] = strawberry.field(description="The newest 50 missing.")

    @classmethod
    def from_audit(cls, audit: FolderAudit) -> FolderAuditType:
        return cls(
            folder=audit.folder, on_server=audit.on_server, stored=audit.stored,
            missing_count=audit.missing_count, extra_count=audit.extra_count,
            coverage=audit.coverage, backfilled=audit.backfilled,
            missing=[MissingMessageType(uid=BigInt(m.uid), message_id=m.message_id, subject=m.subject, date=m.date)
                     for m in audit.missing],
        )


@strawberry.type(name="MailEvent", description="Something changed in one of your accounts.")
class MailEventType:
    kind: str = strawberry.field(description="NEW_MESSAGES, FLAGS_CHANGED, MESSAGES_REMOVED or SYNC_STATE")
    account_id: strawberry.ID
    message_ids: list[strawberry.ID]
    at: datetime

    @classmethod
    def from_event(cls, event: MailEvent) -> MailEventType:
        return cls(kind=event.kind, account_id=to_id(event.account_id),
                   message_ids=[to_id(i) for i in event.message_ids], at=event.at)


async def _audit(info: Info, account_id: strawberry.ID, backfill: bool) -> list[FolderAuditType]:
    account = await get_account(info.context.user, parse_id(account_id, field="accountId"))
    services = info.context.services
    settings = services.settings
    if backfill and settings.syncs_in_workers:  # a writer beside the workers: under the fence
        async with exclusive_sync(settings.effective_database_url, account.id) as fence:
            audits = await audit_account(account.id, replace(services.sync_services(), fence=fence), backfill=True)
    else:
        audits = await audit_account(account.id, services.sync_services(), backfill=backfill)
    if any(a.missing_count > a.backfilled for a in audits):
        services.request_sync(account.id)  # the audit marked those folders: reconcile them now
    return [FolderAuditType.from_audit(a) for a in audits]


@strawberry.type
class SyncQueries:
    @strawberry.field(description="Compare the mail server with the store, folder by folder.")
    async def mail_audit(self, info: Info, account_id: strawberry.ID) -> list[FolderAuditType]:
        return await _audit(info, account_id, backfill=False)


@strawberry.type
class SyncMutations:
    @strawberry.mutation(description="Sync this account now (returns at once; watch syncState).")
    async def sync_now(self, info: Info, account_id: strawberry.ID) -> MailAccountType:
        account = await get_account(info.context.user, parse_id(account_id, field="accountId"))
        services = info.context.services
        if services.scheduler is None:
            raise SalesInboxError(
                ErrorCode.SYNC_DISABLED,
                "Sync is off for this server process (SALESINBOX_SYNC_ENABLED=false): run "
                "`salesinbox sync --account ID`, or let workers sync (SALESINBOX_SYNC_RUNNER=workers "
                "and `salesinbox worker`, see README, Running at scale).",
            )
        services.request_sync(account.id)
        return MailAccountType.from_model(account)

    @strawberry.mutation(description="Audit, then fetch whatever the store is missing.")
    async def backfill_missing_mail(self, info: Info, account_id: strawberry.ID) -> list[FolderAuditType]:
        return await _audit(info, account_id, backfill=True)


@strawberry.type
class SyncSubscriptions:
    @strawberry.subscription(description="Live events of your own accounts: new mail, flags, state.")
    async def mail_events(self, info: Info) -> AsyncGenerator[MailEventType, None]:
        viewer = await info.context.authenticate()
        async with info.context.services.events.subscribe(lambda e: e.user_id == viewer.id) as queue:
            while True:
                yield MailEventType.from_event(await queue.get())
