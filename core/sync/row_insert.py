"""Rows of the hot tables (messages, bodies, addresses, attachments) inserted in bulk.

The very INSERT statement and column conversions (``Field.to_db_value``) that
``Model.bulk_create`` uses, but from plain dicts: building a model instance per row was most
of the CPU time of storing a batch, and the conversions (~45 values a message) most of the
rest, hence :func:`_converter`'s shortcut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.base import Field
from tortoise.models import Model
from tortoise.validators import MaxLengthValidator

__all__ = ["insert_rows"]

_InsertPlan = tuple[str, tuple[tuple[str, Callable[[Any, Any], Any]], ...], frozenset[str]]
_insert_plans: dict[tuple[str, type[Model]], _InsertPlan] = {}


def _insert_plan(connection: BaseDBAsyncClient, model: type[Model]) -> _InsertPlan:
    key = (connection.connection_name, model)
    plan = _insert_plans.get(key)
    if plan is None:
        executor = connection.executor_class(model=model, db=connection)
        fields = model._meta.fields_map
        columns = tuple((name, _converter(fields[name])) for name in executor.regular_columns)
        required = frozenset(name for name in executor.regular_columns if not fields[name].null)
        plan = _insert_plans[key] = (executor.insert_query, columns, required)
    return plan


def _converter(field: Field[Any]) -> Callable[[Any, Any], Any]:
    """``field.to_db_value``, with a shortcut for the values it returns unchanged: those of
    exactly its type that its validators (none, or one maximum length) accept. Anything else,
    and any other field class, goes through ``to_db_value`` itself (same value, same errors).
    The shortcut halves the CPU time of converting a batch's ~45 values a message."""
    convert = field.to_db_value
    kind, validators = field.field_type, field.validators
    if type(field).to_db_value is not Field.to_db_value or not isinstance(kind, type):
        return convert
    if not validators:
        def unvalidated(value: Any, model: Any) -> Any:
            return value if value is None or type(value) is kind else convert(value, model)
        return unvalidated
    if len(validators) == 1 and type(validators[0]) is MaxLengthValidator:
        longest = validators[0].max_length

        def within_length(value: Any, model: Any) -> Any:
            if type(value) is kind and len(value) <= longest:
                return value
            return convert(value, model)  # None on a nullable field, a conversion, an error
        return within_length
    return convert


async def insert_rows(connection: BaseDBAsyncClient, model: type[Model], rows: list[dict[str, Any]]) -> None:
    """``model.bulk_create()`` of ``rows`` (field name → value, for every insert column)."""
    if not rows:
        return
    query, columns, required = _insert_plan(connection, model)
    values = []
    for row in rows:
        for name in required:
            if row[name] is None:
                raise ValueError(f"{name} is non nullable field, but null was passed")
        values.append([convert(row[name], model) for name, convert in columns])
    await connection.execute_many(query, values)
