"""Custom scalars. GraphQL ``Int`` is 32-bit, too small for IMAP UIDs and MODSEQ values.

Fields annotate ``BigInt`` (a ``NewType`` of ``int``); :data:`SCALAR_MAP` goes into the
schema's ``StrawberryConfig`` so strawberry knows how to send and read it.
"""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

_MIN, _MAX = -(2**63), 2**63 - 1

BigInt = NewType("BigInt", int)


def parse_bigint(value: object) -> int:
    """Accept an integer or a decimal string (JavaScript clients must send large values as
    strings); refuse anything outside the signed 64-bit range."""
    if isinstance(value, bool):
        raise ValueError("BigInt must be an integer, not a boolean")
    if isinstance(value, str):
        value = int(value.strip())
    if not isinstance(value, int) or not _MIN <= value <= _MAX:
        raise ValueError("BigInt must be a 64-bit signed integer")
    return value


SCALAR_MAP: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A 64-bit integer (IMAP UIDs, MODSEQ), sent as a decimal string.",
        serialize=lambda value: str(int(value)),
        parse_value=parse_bigint,
    )
}
