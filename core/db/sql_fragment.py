"""Fixed SQL fragments with bound values, for the correlated sub-queries Tortoise lacks.

Tortoise 1.1 has no ``Exists``/``OuterRef`` and its ``RawSQL`` takes no parameters. The
policy and the views need sub-queries correlated with the outer ``"message"`` row (so that
the databases probe an index per candidate row instead of materialising a whole table), so
they write them as :class:`SqlFragment` inside ``Q(id__in=...)``.
"""

from __future__ import annotations

from pypika_tortoise import SqlContext
from pypika_tortoise.terms import Term, ValueWrapper


class SqlFragment(Term):
    """A fixed SQL fragment in which each ``{}`` becomes a bound parameter for a value.

    The values are rendered through pypika's ``ValueWrapper``, i.e. as ``?``/``$n``
    placeholders with the values sent apart, never spliced into the text.
    """

    def __init__(self, text: str, *values: object) -> None:
        super().__init__()
        self.parts = " ".join(text.split()).split("{}")
        if len(self.parts) != len(values) + 1:
            raise ValueError("one value per {} placeholder")
        self.values = values

    def get_sql(self, ctx: SqlContext) -> str:
        sql = self.parts[0]
        for value, part in zip(self.values, self.parts[1:], strict=True):
            sql += ValueWrapper(value).get_sql(ctx) + part
        return sql
