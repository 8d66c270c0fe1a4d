"""The ``salesinbox`` command: run the server, migrate, create the first admin, manage keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from salesinbox.core.credentials import generate_key
from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.crm.users import create_user
from salesinbox.core.db.connection import migrate_database, open_database
from salesinbox.core.db.models import Profile
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.log_limits import configure_logging
from salesinbox.core.settings import Settings, warn_about_unknown_variables
from salesinbox.core.sync.imap_fetch import shutdown_parse_pool


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .asgi_app import create_app

    host = args.host or settings.host
    port = args.port or settings.port
    print(f"SalesInbox: GraphQL and GraphiQL at http://{host}:{port}/graphql", flush=True)
    # log_config=None: uvicorn's loggers propagate to our bounded root handler (see main).
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
        log_config=None,
        ws_max_size=settings.max_request_bytes,  # uvicorn refuses bigger frames before assembling them
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(migrate_database(settings.effective_database_url))
    print("Database is up to date.")
    return 0


async def _create_admin_async(settings: Settings, email: str, name: str) -> str:
    async with open_database(settings):
        user = await create_user(None, email=email, name=name, profile=Profile.ADMIN)
        _, token = await issue_token(user, "created by salesinbox create-admin")
        return token


def _create_admin(settings: Settings, args: argparse.Namespace) -> int:
    token = asyncio.run(_create_admin_async(settings, args.email, args.name))
    print(f"Admin {args.email} created. API token (shown once, keep it safe):")
    print(token)
    print('Use it as the header  {"Authorization": "Bearer ' + token[:8] + '…"}  in GraphiQL.')
    return 0


async def _issue_token_async(settings: Settings, email: str, name: str) -> str:
    from salesinbox.core.address_normalisation import normalise_email
    from salesinbox.core.db.models import User
    from salesinbox.core.errors import not_found

    async with open_database(settings):
        user = await User.get_or_none(email=normalise_email(email))
        if user is None:
            raise not_found("user")
        return (await issue_token(user, name))[1]


def _issue_token(settings: Settings, args: argparse.Namespace) -> int:
    print(asyncio.run(_issue_token_async(settings, args.email, args.name)))
    return 0


async def _with_sync_services(settings: Settings, work):
    from .asgi_app import build_services

    async with open_database(settings):
        services = build_services(settings.with_overrides(sync_enabled=False))
        try:
            return await work(services.sync_services())
        finally:
            await asyncio.to_thread(shutdown_parse_pool)  # the parsing processes, if started


def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from salesinbox.core.sync.engine import sync_account

    report = asyncio.run(_with_sync_services(settings, lambda s: sync_account(args.account, s)))
    for folder in report.folders:
        status = f"error: {folder.error}" if folder.error else "ok"
        print(f"{folder.name}: {folder.messages} messages ({folder.new_messages} new, "
              f"{folder.warnings} with warnings) {status}")
    print(f"Account {args.account}: {report.state.value}" + (f" ({report.error})" if report.error else ""))
    return 0 if report.error is None and all(f.error is None for f in report.folders) else 1


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from salesinbox.core.sync.audit import audit_account

    audits = asyncio.run(_with_sync_services(
        settings, lambda s: audit_account(args.account, s, backfill=args.backfill)))
    for audit in audits:
        print(f"{audit.folder}: {audit.stored}/{audit.on_server} stored ({audit.coverage:.2%}), "
              f"{audit.missing_count} missing, {audit.backfilled} backfilled")
        for missing in audit.missing[:10]:
            print(f"  missing UID {missing.uid}: {missing.date} {missing.subject!r} {missing.message_id}")
    return 0 if all(a.missing_count == a.backfilled for a in audits) else 1


def _generate_key(settings: Settings, args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


def _export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from .graphql_schema import SDL_PATH, export_sdl

    target = args.output or SDL_PATH
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(export_sdl())
    print(f"Schema written to {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every setting also comes from SALESINBOX_* variables."""
    parser = argparse.ArgumentParser(prog="salesinbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (migrates the database first)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.set_defaults(handler=_serve)

    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(
        handler=_migrate
    )

    admin = commands.add_parser("create-admin", help="create an admin user and print a token")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    admin.set_defaults(handler=_create_admin)

    token = commands.add_parser("issue-token", help="print a new API token for a user")
    token.add_argument("--email", required=True)
    token.add_argument("--name", default="issued by salesinbox issue-token")
    token.set_defaults(handler=_issue_token)

    sync = commands.add_parser("sync", help="run one sync pass of an account and report")
    sync.add_argument("--account", type=int, required=True, help="the mail account id")
    sync.set_defaults(handler=_sync)

    audit = commands.add_parser("audit", help="compare an account's server and store")
    audit.add_argument("--account", type=int, required=True, help="the mail account id")
    audit.add_argument("--backfill", action="store_true", help="fetch what is missing")
    audit.set_defaults(handler=_audit)

    commands.add_parser("generate-key", help="print a new SALESINBOX_SECRET_KEY").set_defaults(
        handler=_generate_key
    )

    export = commands.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", help="file to write (default: the packaged schema.graphql)")
    export.set_defaults(handler=_export_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``salesinbox`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_line_limit)
        warn_about_unknown_variables()  # a typo in a variable name would go unnoticed
        return args.handler(settings, args)
    except SalesInboxError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
