"""schema/query_slots.py: at most N queries execute at once, admitted in arrival order;
mutations are not held back."""

from __future__ import annotations

import asyncio

import strawberry

from salesinbox.core.settings import Settings
from salesinbox.schema.graphql_schema import build_schema
from salesinbox.schema.query_slots import query_slots

running: list[int] = []
started: list[int] = []
gate: dict[str, asyncio.Event] = {}  # "release": made in each test's own event loop


@strawberry.type
class Query:
    @strawberry.field
    async def work(self, n: int) -> int:
        started.append(n)
        running.append(n)
        try:
            await gate["release"].wait()
        finally:
            running.remove(n)
        return n


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def poke(self) -> int:
        return len(running)


def _schema(slots: int) -> strawberry.Schema:
    extension = query_slots(slots)
    return strawberry.Schema(Query, Mutation, extensions=[extension] if extension else [])


async def _start_six(slots: int) -> tuple[strawberry.Schema, list[asyncio.Task]]:
    """Six queries sent at once to a schema of ``slots``, left to run as far as they may."""
    started.clear()
    gate["release"] = asyncio.Event()
    schema = _schema(slots)
    tasks = [asyncio.create_task(schema.execute(f"{{ work(n: {n}) }}")) for n in range(6)]
    for _ in range(20):
        await asyncio.sleep(0)
    return schema, tasks


async def test_at_most_n_queries_run_the_rest_wait_in_order_and_mutations_pass() -> None:
    schema, tasks = await _start_six(2)
    assert sorted(running) == [0, 1] and started == [0, 1]  # two admitted, in arrival order
    poked = await schema.execute("mutation { poke }")  # not held back by the full slots
    assert poked.data == {"poke": 2}
    gate["release"].set()
    results = await asyncio.gather(*tasks)
    assert [r.data for r in results] == [{"work": n} for n in range(6)]
    assert started == list(range(6))  # the waiting ones ran in the order they came


async def test_zero_means_no_limit_and_the_setting_reaches_the_schema() -> None:
    assert query_slots(0) is None
    _, tasks = await _start_six(0)
    assert sorted(running) == list(range(6))
    gate["release"].set()
    await asyncio.gather(*tasks)
    def extension_names(slots: int) -> set[str]:
        return {getattr(e, "__name__", type(e).__name__)
                for e in build_schema(Settings(max_concurrent_queries=slots)).extensions}

    assert "QuerySlots" in extension_names(3) and "QuerySlots" not in extension_names(0)
