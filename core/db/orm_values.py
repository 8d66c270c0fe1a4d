"""One column of a query's rows, typed as what it is.

Tortoise types ``values_list(field, flat=True)`` as a list of tuples, though it returns the
values themselves; :func:`column_values` says so once for the type checker.
"""

from __future__ import annotations

from typing import Any

from tortoise.queryset import QuerySet


async def column_values(query: QuerySet[Any], field: str) -> list[Any]:
    """The values of ``field`` in the rows of ``query``, in the query's order."""
    values: list[Any] = await query.values_list(field, flat=True)
    return values
