"""The ASGI application: GraphQL over HTTP and WebSocket, offline GraphiQL, health and
readiness checks, Prometheus metrics, the download of a message's original."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pluggy
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from tortoise import connections

from salesinbox.core.credentials import SecretBox
from salesinbox.core.crm import api_tokens as tokens
from salesinbox.core.db.connection import is_postgres, open_database, redacted_url
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.log_limits import configure_logging
from salesinbox.core.oauth.oauth_clients import CALLBACK_PATH
from salesinbox.core.oauth.oauth_launch import START_PATH, cookie_name, cookie_path, launch_sign_in
from salesinbox.core.oauth.oauth_sign_in import complete_sign_in
from salesinbox.core.observability.metrics import forget_this_process
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.scale_out.notify_relay import NotifyRelay
from salesinbox.core.scale_out.queued_syncs import QueuedSyncs
from salesinbox.core.settings import Settings, warn_about_unknown_variables
from salesinbox.core.sync.idle import IdleTiming
from salesinbox.core.sync.scheduler import InProcessScheduler

from .context import Context, Services
from .graphiql import graphiql_static_mount, render_graphiql_page
from .graphql_schema import build_schema
from .http_limits import RequestLimits
from .http_requests import check_content_type, decode_body, loads, refusal_response, request_data
from .metrics_instrumentation import HttpMetrics
from .oauth_sign_in import callback_response, launch_response
from .observability import METRICS_PATH, READY_PATH, metrics, readyz
from .original_download import ORIGINAL_PATH, original_message
from .websocket import TransportWSHandler, offers_supported_protocol, refuse_handshake

GRAPHQL_PATH = "/graphql"
log = logging.getLogger("salesinbox.server")


class SalesInboxGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, the offline GraphiQL page, typed refusals of
    malformed requests (:mod:`.http_requests`) and graphql-transport-ws only (:mod:`.websocket`)."""

    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(self, app: Starlette, settings: Settings) -> None:
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=False,  # GET would let a link trigger operations
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not offers_supported_protocol(scope):
            await refuse_handshake(scope, receive, send)
        elif scope["type"] == "http":
            try:
                response = await self.run(Request(scope, receive))
            except HTTPException as error:  # strawberry's or ours: typed JSON, not plain text
                response = refusal_response(error)
            await response(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        if request.method != "POST":  # GET: strawberry refuses its operations (allow_queries_via_get)
            return await super().parse_http_body(request)  # type: ignore[return-value]
        check_content_type(request.content_type)
        return request_data(decode_body(await request.get_body()))

    def decode_json(self, data: str | bytes) -> object:
        return loads(data)

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return Context(
            services=self._app.state.services,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(render_graphiql_page(GRAPHQL_PATH))


async def healthz(request: Request) -> JSONResponse:
    """Liveness and database reachability, without authentication (readiness, migrations
    included, is ``/readyz``: :mod:`.observability`)."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # any failure means "not healthy"
        log.exception("Health check: database unreachable")
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


async def oauth_callback(request: Request) -> Response:
    """``GET /oauth/callback``: where the provider sends the browser back after a consent
    (core/oauth/oauth_sign_in.py does the work; the answer is a page or a frontend redirect)."""
    services: Services = request.app.state.services
    outcome = await complete_sign_in(
        request.query_params, request.cookies, registry=services.providers, secrets=services.secrets,
        settings=services.settings, policy=services.connect_policy, request_sync=services.request_sync,
    )
    response = callback_response(outcome)
    if outcome.sign_in_id is not None:  # the binding has served: the browser forgets it
        response.delete_cookie(cookie_name(outcome.sign_in_id), path=cookie_path(services.settings))
    return response


async def oauth_start(request: Request) -> Response:
    """``GET /oauth/start?ticket=…``: the link ``startOAuthSignIn`` answers; binds this
    browser to the sign-in (a cookie, core/oauth/oauth_launch.py) and redirects to the provider."""
    settings = request.app.state.services.settings
    try:
        launch = await launch_sign_in(request.query_params.get("ticket", ""), settings)
    except SalesInboxError as error:
        return launch_response(None, error)
    return launch_response(launch, None)


def build_services(settings: Settings, plugin_manager: pluggy.PluginManager | None = None) -> Services:
    """Load the provider plugins and the secret key, and set up the sync engine."""
    services = Services(
        settings=settings,
        providers=ProviderRegistry(plugin_manager or get_plugin_manager(
            blocked=settings.disabled_plugins, trace_hooks=settings.trace_hooks)),
        secrets=SecretBox.from_settings(settings),
    )
    if is_postgres(settings.effective_database_url):
        # Processes sharing the database (API processes, workers) share events and token changes.
        services.events = NotifyRelay(settings.effective_database_url)
    tokens.token_cache.ttl = settings.token_cache_seconds
    services.providers.providers()  # fail at start-up, not on first use, if a plugin is broken
    if settings.sync_enabled and settings.syncs_in_workers:
        if not is_postgres(settings.effective_database_url):
            raise SalesInboxError(ErrorCode.INVALID_INPUT, (
                "SALESINBOX_SYNC_RUNNER=workers needs PostgreSQL: set SALESINBOX_DATABASE_URL=postgres://… "
                "(or SALESINBOX_SYNC_RUNNER=in-process to sync in this server on SQLite)."))
        services.scheduler = QueuedSyncs(settings.effective_database_url)
    elif settings.sync_enabled:
        services.scheduler = InProcessScheduler(
            services.syncing_services(),
            poll_interval=settings.sync_poll_interval,
            idle_timing=IdleTiming(probe_interval=settings.idle_probe_interval),
        )
    return services


def create_app(
    settings: Settings | None = None,
    *,
    open_db: bool = True,
    migrate: bool = True,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Starlette:
    """Build the server for ``settings`` (default: from the environment).

    The lifespan opens the database (applying pending migrations), loads the provider
    plugins and the secret key, starts the sync engine, and stops both on shutdown. With
    ``open_db=False`` the caller has already connected the ORM (tests, embedding);
    ``migrate=False`` connects without applying migrations (``serve --workers N`` applied
    them once before starting the workers); ``plugin_manager`` replaces the default one
    (tests pointing presets at test servers).
    """
    if settings is None:
        settings = Settings.from_env()
        warn_about_unknown_variables()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = build_services(settings, plugin_manager)
        app.state.services = services
        async with AsyncExitStack() as stack:
            stack.callback(forget_this_process)  # multiprocess metrics: its IDLE gauge ends
            if open_db:
                await stack.enter_async_context(open_database(settings, apply_migrations=migrate))
                log.info("SalesInbox ready on database %s", redacted_url(settings.effective_database_url))
            if isinstance(services.events, NotifyRelay):  # after the database, before the sync
                await services.events.start()
                stack.push_async_callback(services.events.stop)  # after the sync stopped (LIFO)
            if services.scheduler is not None:
                await services.scheduler.start()
                stack.push_async_callback(services.scheduler.stop)
            # Everything loaded so far lives as long as the server: keep it out of the cyclic
            # collector's full passes, which otherwise set the p95 of requests (bench_views).
            gc.freeze()
            yield

    limits = Middleware(
        RequestLimits,
        max_bytes=settings.max_request_bytes,
        max_bytes_with_token=settings.max_request_bytes_with_token,
    )
    # HttpMetrics outermost: it times and counts the refusals of RequestLimits too.
    app = Starlette(lifespan=lifespan, middleware=[Middleware(HttpMetrics), limits])
    graphql = SalesInboxGraphQL(app, settings)
    app.router.routes.extend(
        [
            Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
            WebSocketRoute(GRAPHQL_PATH, graphql),
            Route("/healthz", healthz, methods=["GET"]),
            Route(READY_PATH, readyz, methods=["GET"]),
            Route(METRICS_PATH, metrics, methods=["GET"]),
            Route(CALLBACK_PATH, oauth_callback, methods=["GET"]),
            Route(START_PATH, oauth_start, methods=["GET"]),
            Route(ORIGINAL_PATH, original_message, methods=["GET"]),
            graphiql_static_mount(),
        ]
    )
    return app



def create_worker_app() -> Starlette:
    """The app of one ``salesinbox serve --workers N`` worker process (uvicorn's factory,
    ``salesinbox.schema.asgi_app:create_worker_app``): settings from the environment, the
    bounded log handler installed again (a spawned worker starts with none), and no
    migrations, which the parent applied once before starting the workers."""
    settings = Settings.from_env()
    configure_logging(settings.log_line_limit, log_format=settings.log_format)
    return create_app(settings, migrate=False)
