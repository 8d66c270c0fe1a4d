"""The GraphQL schema: every domain module's queries and mutations, with limits and auth."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import strawberry
from graphql.error import GraphQLError
from graphql.language import DocumentNode
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.execution import ExecutionResult

from salesinbox.core.errors import SalesInboxError
from salesinbox.core.settings import Settings

from .errors import TypedErrors, log_unexpected_errors
from .execution import LeanExecutionContext
from .input_guard import StringGuard
from .accounts import AccountMutations, AccountQueries
from .messages import MessageMutations
from .outgoing import OutgoingMutations
from .providers import ProviderQueries
from .scalars import SCALAR_MAP
from .sharing import SharingMutations, SharingQueries
from .sync import SyncMutations, SyncQueries, SyncSubscriptions
from .records import RecordMutations, RecordQueries
from .users import UserMutations, UserQueries
from .views import ViewQueries

SDL_PATH = Path(__file__).with_name("schema.graphql")

Query = merge_types(
    "Query",
    (UserQueries, RecordQueries, ProviderQueries, AccountQueries, SyncQueries, ViewQueries, SharingQueries),
)
Mutation = merge_types(
    "Mutation",
    (
        UserMutations, RecordMutations, AccountMutations, MessageMutations, SyncMutations,
        OutgoingMutations, SharingMutations,
    ),
)
Subscription = merge_types("Subscription", (SyncSubscriptions,))


class Authenticated(SchemaExtension):
    """Refuses every operation, introspection included, without a valid bearer token."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        try:
            await self.execution_context.context.authenticate()
        except SalesInboxError as error:
            # Setting a result makes strawberry skip execution.
            self.execution_context.result = ExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)]
            )
        yield


class SalesInboxSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected_errors(errors)


def _limits(settings: Settings) -> list[type[SchemaExtension]]:
    """The depth, alias and token limits, plus caches of parsing and validation.

    The validation rules are built once here, not per request: the validation cache is keyed
    by (document, rules), so the same query from a frontend is parsed and validated once.
    """
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]

    # Subclasses bind the values: strawberry wants extension classes, instantiated per request.
    class Limits(AddValidationRules):
        def __init__(self) -> None:
            super().__init__(rules)

    class TokenLimit(MaxTokensLimiter):
        def __init__(self) -> None:
            super().__init__(max_token_count=settings.max_query_tokens)

    class Validated(ValidationCache):
        def __init__(self) -> None:
            super().__init__(maxsize=256)

    parsed: OrderedDict[str, DocumentNode] = OrderedDict()

    class Parsed(SchemaExtension):
        """Reuses the document of a query text parsed before (LRU of 256).

        Only documents that parsed are kept, and strawberry's own parser still runs for new
        texts, so a syntax error goes through the usual path and is typed like any other
        (strawberry's ``ParserCache`` raises it from the extension, past the error masking).
        The token limit is the same for every text of this schema, so a kept document passed it.
        """

        def on_parse(self) -> Iterator[None]:
            context = self.execution_context
            query = context.query
            document = parsed.get(query) if query else None
            if document is not None:
                parsed.move_to_end(query)  # type: ignore[arg-type]
                context.graphql_document = document
            yield
            if document is None and query and context.graphql_document is not None:
                parsed[query] = context.graphql_document
                if len(parsed) > 256:
                    parsed.popitem(last=False)

    return [TokenLimit, Parsed, Limits, Validated]


def build_schema(settings: Settings | None = None) -> SalesInboxSchema:
    """Build the schema with the limits of ``settings`` (defaults when ``None``)."""
    settings = settings or Settings()
    return SalesInboxSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[TypedErrors, Authenticated, StringGuard, *_limits(settings)],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=LeanExecutionContext,
    )


def export_sdl() -> str:
    """The schema in SDL, as committed in ``schema/schema.graphql`` for code generators."""
    return build_schema().as_str() + "\n"
