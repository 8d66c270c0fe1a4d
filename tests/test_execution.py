"""schema/execution.py: the lean executor gives exactly graphql-core's results, errors included."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.db.models import User
from salesinbox.core.settings import Settings
from salesinbox.schema.asgi_app import build_services
from salesinbox.schema.context import Context
from salesinbox.schema.execution import PREFETCHED, LeanExecutionContext, _plain_fields
from salesinbox.schema.graphql_schema import build_schema

from .test_schema_views import world  # noqa: F401 - the fixture


class Colour(Enum):
    RED = "red"


class Row:
    def __init__(self, name: object, nickname: object = None, colour: object = Colour.RED,
                 cached: object = None) -> None:
        self.name, self.nickname, self.colour, self.cached = name, nickname, colour, cached

    @property
    def broken(self) -> str:
        raise RuntimeError("attribute failed")


@strawberry.type
class Item:
    name: str
    nickname: str | None
    colour: strawberry.enum(Colour)  # type: ignore[valid-type]
    broken: str

    @strawberry.field(metadata={PREFETCHED: "cached"})  # a prefetched leaf: the attribute when set
    def label(self) -> str | None:
        cached = getattr(self, "cached", None)
        return "from the resolver" if cached is None else cached


@strawberry.interface
class Thing:
    name: str


@strawberry.type
class Gadget(Thing):
    size: int

    @strawberry.field
    async def later(self) -> str:  # awaited beside the plain fields of the same object
        if self.size < 0:
            raise ValueError("negative size")
        return f"{self.name}!"


@strawberry.type
class SpecialGadget(Gadget):  # a subclass: strawberry's resolve_type decides, not the shortcut
    pass


@strawberry.type
class Widget(Thing):
    colour: strawberry.enum(Colour)  # type: ignore[valid-type]


@strawberry.interface
class Chosen:  # decides its type itself: the shortcut must leave it alone
    name: str

    @classmethod
    def resolve_type(cls, obj: object, info: object, abstract: object) -> str:
        return "ChosenB"


@strawberry.type
class ChosenA(Chosen):
    pass


@strawberry.type
class ChosenB(Chosen):
    pass


class GadgetRow:  # not a strawberry object: cast to one, or rejected
    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        rows: list[Any] = [Row("a", "x", cached="kept"), Row(None), Row(3.5, cached=object()),
                           Row("b", colour="not a colour"), Row(object())]
        return rows

    @strawberry.field
    def things(self) -> list[Thing | None]:  # nullable items: one bad item does not null the rest
        odd: list[Any] = [Gadget(name=None, size=3), strawberry.cast(Widget, Row("cast")),  # type: ignore[arg-type]
                          strawberry.cast(Widget, Gadget(name="c", size=5)), GadgetRow("row", 4)]
        return [Gadget(name="g", size=1), Widget(name="w", colour=Colour.RED), SpecialGadget(name="s", size=2),
                Gadget(name="bad", size=-1), *odd]

    @strawberry.field
    def chosen(self) -> list[Chosen]:
        return [ChosenA(name="a")]  # its resolve_type says ChosenB, so it is one


TYPES = [Gadget, SpecialGadget, Widget, ChosenA, ChosenB]

TOY_QUERIES = [
    "{ items { name nickname colour } }",           # nulls in a nullable field, then a non-null one
    "{ items { nickname colour } }",                  # an enum value that is not a member
    "{ items { broken } }",                           # an attribute that raises
    "{ items { name ...F } } fragment F on Item { name nickname }",
    "{ items { __typename n: nickname } }",
    "{ items { nickname label } }",                   # prefetched: set, unset (resolver), not a string
    # interface values: exact classes, a subclass, a cast, a foreign object, async and failing fields
    "{ things { __typename name ... on Gadget { size later } ... on Widget { colour } } }",
    "{ things { name } }",
    "{ chosen { __typename name } }",
]


def _outcome(result: strawberry.types.ExecutionResult) -> tuple:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return result.data, errors


@pytest.mark.parametrize("query", TOY_QUERIES)
async def test_same_data_and_errors_as_graphql_core_on_odd_values(query: str) -> None:
    stock = strawberry.Schema(Query, types=TYPES, execution_context_class=StrawberryGraphQLCoreExecutionContext)
    lean = strawberry.Schema(Query, types=TYPES, execution_context_class=LeanExecutionContext)
    expected, got = _outcome(await stock.execute(query)), _outcome(await lean.execute(query))
    assert got == expected
    assert expected[1] or "broken" not in query  # the odd cases do produce errors
    assert expected[0] is not None or "things" not in query  # interface values: each item completes alone


def test_plain_fields_are_the_attribute_leaves_only() -> None:
    schema = strawberry.Schema(Query)._schema
    plain = _plain_fields(schema)
    item = schema.type_map["Item"].fields  # type: ignore[attr-defined]  # an object type
    assert {id(item[name]) for name in ("name", "nickname", "colour", "broken")} <= plain.keys()
    assert id(schema.type_map["Query"].fields["items"]) not in plain  # type: ignore[attr-defined]  # has a resolver


VIEW_QUERIES = [
    """query($id: ID!) { contact(id: $id) { id fullName kind emails { items { id uid subject date direction seen
         folder owner { name profile isActive } linkedRecords { id kind ... on Contact { secondaryEmail } } }
         nextCursor } threads { key messageCount latestDate messages { id snippet } } } }""",
    "{ salesInbox(first: 3) { items { id size hasAttachments parseWarnings answered flagged fromName } } }",
]


@pytest.mark.parametrize("query", VIEW_QUERIES)
async def test_same_results_as_graphql_core_on_the_mail_views(db: Settings, rep: User, world: dict,  # noqa: F811
                                                              query: str) -> None:
    services = build_services(db)
    token = "Bearer " + (await issue_token(rep, "t"))[1]
    outcomes = []
    for context_class in (StrawberryGraphQLCoreExecutionContext, LeanExecutionContext):
        schema = build_schema(db)
        schema.execution_context_class = context_class
        result = await schema.execute(query, {"id": str(world["jane"].id)},
                                      context_value=Context(services=services, authorization=token))
        assert not result.errors, result.errors
        outcomes.append(result.data)
    assert outcomes[0] == outcomes[1] and outcomes[0] is not None
