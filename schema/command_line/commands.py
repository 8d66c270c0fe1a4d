"""The commands of ``salesinbox`` and its argument parser (:func:`main` is the console script)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from salesinbox.core.credentials import generate_key
from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.crm.users import create_user
from salesinbox.core.db.connection import is_postgres, migrate_database, open_database, redacted_url, sqlite_path
from salesinbox.core.db.models import Profile
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.log_limits import configure_logging
from salesinbox.core.settings import Settings, warn_about_unknown_variables
from salesinbox.core.sync.imap_fetch import shutdown_parse_pool

from .plugin_check import check_installed_plugins

DESCRIPTION = """\
The SalesInbox server's command line: run the server, create the first admin,
issue API tokens, sync or audit a mail account, check installed provider plugins.

Every setting comes from a SALESINBOX_* environment variable (see the README).
The server and these commands use the same database when they see the same
settings: by default the SQLite file in ~/.local/share/salesinbox
(SALESINBOX_DATA_DIR), or SALESINBOX_DATABASE_URL. Commands that use the
database say on stderr which one they used."""

EPILOG = "Run 'salesinbox COMMAND --help' for a command's options."


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .serve import check_workers, serve

    check_workers(settings, args.workers)  # refused before the banner, not after it
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"SalesInbox: GraphQL and GraphiQL at http://{host}:{port}/graphql", flush=True)
    serve(settings, host=host, port=port, workers=args.workers)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .worker_command import run_worker

    return run_worker(settings, port=args.port if args.port is not None else settings.worker_port,
                      host=args.host or settings.host)


def announce_database(settings: Settings) -> None:
    """Say on stderr which database a command uses, loudly when it is a new SQLite file: a
    command run without the server's ``SALESINBOX_DATA_DIR`` would otherwise write to a
    database the server never reads."""
    url = settings.effective_database_url
    path = sqlite_path(url)
    where = str(path) if path is not None else redacted_url(url)
    source = ("SALESINBOX_DATABASE_URL" if settings.database_url
              else f"SALESINBOX_DATA_DIR={settings.data_dir}")
    if path is not None and not path.exists():
        print(f"salesinbox: NEW database {where} (from {source}); no server has used it yet. "
              "If your server runs with another SALESINBOX_DATA_DIR or SALESINBOX_DATABASE_URL, "
              "set the same here.", file=sys.stderr, flush=True)
    else:
        print(f"salesinbox: database {where} (from {source})", file=sys.stderr, flush=True)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(migrate_database(settings.effective_database_url))
    if settings.syncs_in_workers and is_postgres(settings.effective_database_url):
        from salesinbox.core.scale_out.job_queue import ensure_job_schema

        if asyncio.run(ensure_job_schema(settings.effective_database_url)):
            print("The sync workers' job queue was created.")
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


async def _with_sync_services(settings: Settings, work, account_id: int, *, writes: bool = True):
    """Run ``work(sync services)`` on the database; when it writes the account's mail while
    workers sync (``SALESINBOX_SYNC_RUNNER=workers``), under the account's fence."""
    from dataclasses import replace

    from salesinbox.core.scale_out.fencing import exclusive_sync
    from salesinbox.schema.asgi_app import build_services

    async with open_database(settings):
        services = build_services(settings.with_overrides(sync_enabled=False))
        try:
            if writes and settings.syncs_in_workers:
                async with exclusive_sync(settings.effective_database_url, account_id) as fence:
                    return await work(replace(services.sync_services(), fence=fence))
            return await work(services.sync_services())
        finally:
            await asyncio.to_thread(shutdown_parse_pool)  # the parsing processes, if started


def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from salesinbox.core.sync.engine import sync_account

    report = asyncio.run(_with_sync_services(settings, lambda s: sync_account(args.account, s), args.account))
    for folder in report.folders:
        status = f"error: {folder.error}" if folder.error else "ok"
        print(f"{folder.name}: {folder.messages} messages ({folder.new_messages} new, "
              f"{folder.warnings} with warnings) {status}")
    print(f"Account {args.account}: {report.state.value}" + (f" ({report.error})" if report.error else ""))
    return 0 if report.error is None and all(f.error is None for f in report.folders) else 1


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from salesinbox.core.sync.audit import audit_account

    audits = asyncio.run(_with_sync_services(
        settings, lambda s: audit_account(args.account, s, backfill=args.backfill), args.account,
        writes=args.backfill))
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
    from salesinbox.schema.graphql_schema import SDL_PATH, export_sdl

    target = args.output or SDL_PATH
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(export_sdl())
    print(f"Schema written to {target}")
    return 0


def _check_plugins(settings: Settings, args: argparse.Namespace) -> int:
    return check_installed_plugins(sys.stdout)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written (plain text), command names and their help on one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action.choices, dict):  # the commands, listed one indent further in
            longest = max((len(name) for name in action.choices), default=0)
            self._action_max_length = max(
                self._action_max_length, longest + self._current_indent + self._indent_increment)


#: the commands that open the database (they say which one, see announce_database)
DATABASE_COMMANDS = frozenset({"migrate", "create-admin", "issue-token", "sync", "audit", "worker"})


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every setting also comes from SALESINBOX_* variables."""
    parser = argparse.ArgumentParser(
        prog="salesinbox", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (migrates the database first)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes sharing the port (default 1; N > 1 needs PostgreSQL "
                       "and SALESINBOX_SYNC_ENABLED=false)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker", help="run syncs and IDLE watching for the servers (PostgreSQL, SALESINBOX_SYNC_RUNNER=workers)",
        description="Run sync passes, IDLE watching, backfill retries, confirmation emails and token "
        "refreshes as jobs of the PostgreSQL job queue, beside other workers: see README, Running at scale.")
    worker.add_argument("--host", help="address of /healthz, /readyz and /metrics (default 127.0.0.1)")
    worker.add_argument("--port", type=int, help="their port (default SALESINBOX_WORKER_PORT, 8001; 0: none)")
    worker.set_defaults(handler=_worker)

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

    commands.add_parser(
        "check-plugins",
        help="check every installed provider plugin against the plugin contract",
        description="Run the provider plugin contract checks against the installed plugins "
        "(built-in and third-party); print PASS or FAIL per plugin; exit 1 on any failure.",
    ).set_defaults(handler=_check_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``salesinbox`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_line_limit, log_format=settings.log_format)
        warn_about_unknown_variables()  # a typo in a variable name would go unnoticed
        if args.command != "serve":
            # A one-shot command reports on stdout; Tortoise's "Tortoise-ORM shutdown" at
            # INFO would only be noise after it.
            logging.getLogger("tortoise").setLevel(logging.WARNING)
        if args.command in DATABASE_COMMANDS:
            announce_database(settings)
        return args.handler(settings, args)
    except SalesInboxError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
