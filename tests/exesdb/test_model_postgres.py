"""The model-based test of test_model.py on PostgreSQL: on one node, and on two nodes
(two backends on the same store) that take turns for every call, so each node keeps
writing and reading over the other's commits (its cached stream states must notice)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import settings

from exesdb.storage.postgres import PostgresBackend

from .test_model import StoreMachine

_numbers = itertools.count()


class PostgresStoreMachine(StoreMachine):
    """The store under test is a fresh PostgreSQL schema per example."""

    dsn = ""  # set by the fixture below

    def __init__(self) -> None:
        self.store_id = f"model{next(_numbers)}"
        super().__init__()

    async def open_store(self) -> Any:
        return await PostgresBackend.open(self.dsn, self.store_id)


class TwoNodes:
    """Two backends on one store: each call goes to the next one in turn."""

    def __init__(self, first: PostgresBackend, second: PostgresBackend) -> None:
        self.nodes = (first, second)
        self.turn = 0

    def __getattr__(self, name: str) -> Any:
        node = self.nodes[self.turn % 2]
        self.turn += 1
        return getattr(node, name)

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()


class TwoNodesStoreMachine(PostgresStoreMachine):
    async def open_store(self) -> Any:
        return TwoNodes(await PostgresBackend.open(self.dsn, self.store_id),
                        await PostgresBackend.open(self.dsn, self.store_id))


@pytest.fixture(autouse=True)
def _server(pg_server):
    PostgresStoreMachine.dsn = pg_server.dsn


PostgresStoreMachine.TestCase.settings = settings(stateful_step_count=25)
TwoNodesStoreMachine.TestCase.settings = settings(stateful_step_count=25)
test_the_store_behaves_like_the_model_on_postgres = PostgresStoreMachine.TestCase
test_two_nodes_on_one_store_behave_like_the_model = TwoNodesStoreMachine.TestCase
