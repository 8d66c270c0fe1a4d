"""The GraphQL schema: every domain module's queries and mutations, with limits and auth."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import strawberry
from graphql.error import GraphQLError
from graphql.language import (
    DocumentNode,
    FieldNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.language import OperationType as GraphQLOperationType
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
from strawberry.types.graphql import OperationType

from salesinbox.core.settings import Settings

from .accounts import AccountMutations, AccountQueries
from .cost import cost_limit
from .errors import TypedErrors, log_unexpected_errors
from .execution import LeanExecutionContext
from .input_guard import StringGuard
from .messages import MessageMutations
from .metrics_instrumentation import OperationMetrics
from .oauth import OAuthMutations, OAuthQueries
from .oauth_sign_in import OAuthSignInMutations, OAuthSignInQueries
from .outgoing import OutgoingMutations
from .providers import ProviderQueries
from .query_slots import query_slots
from .records import RecordMutations, RecordQueries
from .scalars import SCALAR_MAP
from .sharing import SharingMutations, SharingQueries
from .sync import SyncMutations, SyncQueries, SyncSubscriptions
from .users import UserMutations, UserQueries
from .views import ViewQueries

SDL_PATH = Path(__file__).with_name("schema.graphql")

Query = merge_types(
    "Query",
    (UserQueries, RecordQueries, ProviderQueries, AccountQueries, SyncQueries, ViewQueries, SharingQueries,
     OAuthQueries, OAuthSignInQueries),
)
Mutation = merge_types(
    "Mutation",
    (
        UserMutations, RecordMutations, AccountMutations, MessageMutations, SyncMutations,
        OutgoingMutations, SharingMutations, OAuthMutations, OAuthSignInMutations,
    ),
)
Subscription = merge_types("Subscription", (SyncSubscriptions,))


class Authenticated(SchemaExtension):
    """Refuses every operation, introspection included, without a valid bearer token.

    It authenticates before parsing, and a refused caller's text is never parsed nor validated
    (a stand-in document takes its place), so that syntax and validation messages ("Did you
    mean …?") tell nothing about the schema to someone without a token.
    """

    refusal: GraphQLError | None = None

    async def on_operation(self) -> AsyncIterator[None]:
        context = self.execution_context
        try:
            await context.context.authenticate()
        except Exception as error:  # noqa: BLE001 - anything but a refusal is masked and logged
            self.refusal = GraphQLError(str(error), original_error=error)
            context.graphql_document = _stand_in(context)
            context.query = None  # nothing to parse, nothing for the parse cache to keep
        yield

    def on_validate(self) -> Iterator[None]:
        if self.refusal is not None:
            # Strawberry (and Validated below) skip validation once errors are set.
            self.execution_context.pre_execution_errors = [self.refusal]
        yield


def _stand_in(context: ExecutionContext) -> DocumentNode:
    """A document with one operation of an allowed type, named as the caller's, so that
    strawberry finds the operation it expects and goes on to the (refused) validation."""
    allowed = set(context.allowed_operations)
    kind = next((k for k in (OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION)
                 if k in allowed), OperationType.QUERY)
    name = context.operation_name
    return DocumentNode(definitions=(OperationDefinitionNode(
        operation=GraphQLOperationType(kind.value),
        name=NameNode(value=name) if isinstance(name, str) else None,
        variable_definitions=(), directives=(),
        selection_set=SelectionSetNode(selections=(FieldNode(name=NameNode(value="__typename")),)),
    ),))


class SalesInboxSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected_errors(errors)


def _limits(settings: Settings) -> list[type[SchemaExtension]]:
    """The depth, alias, token and cost limits, plus caches of parsing and validation.

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

        def on_validate(self) -> Iterator[None]:
            if self.execution_context.pre_execution_errors is not None:  # refused (Authenticated)
                yield
                return
            yield from super().on_validate()

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

    slots = query_slots(settings.max_concurrent_queries)
    return [TokenLimit, Parsed, Limits, Validated, cost_limit(settings), *([slots] if slots else [])]


def build_schema(settings: Settings | None = None) -> SalesInboxSchema:
    """Build the schema with the limits of ``settings`` (defaults when ``None``)."""
    settings = settings or Settings()
    return SalesInboxSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # OperationMetrics first: it reads the errors once TypedErrors has typed them
        extensions=[OperationMetrics, TypedErrors, Authenticated, StringGuard, *_limits(settings)],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=LeanExecutionContext,
    )


def export_sdl() -> str:
    """The schema in SDL, as committed in ``schema/schema.graphql`` for code generators."""
    return build_schema().as_str() + "\n"
