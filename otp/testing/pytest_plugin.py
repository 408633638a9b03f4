"""pytest fixtures for testing code built on ``otp`` (needs pytest-trio).

Enable them in your top-level ``conftest.py`` (pytest accepts ``pytest_plugins`` only
there)::

    pytest_plugins = ["otp.testing.pytest_plugin"]

or, in any ``conftest.py``, import them: ``from otp.testing.pytest_plugin import otp_node``.

Fixtures:

``otp_node``
    A running node (:func:`otp.node`) for an async test; the test runs as its main
    process, so ``otp.self()``, ``otp.receive()``, ``start_link`` and links work directly.
    The node shuts down in order after the test. Add pytest-trio's ``autojump_clock``
    fixture to the test's arguments to run it in virtual time (restart windows, shutdown
    timeouts and ``receive`` timeouts then take no real time)::

        async def test_restart(otp_node, autojump_clock):
            sup = await otp.supervisor.start_link([Worker.child_spec()], period=5.0)
            ...

``otp_driver``
    A :class:`otp.testing.NodeDriver` for a synchronous test: a node on a virtual clock
    that stays alive between ``driver.run(async_fn, *args)`` calls. Closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .._errors import ProcessExited
from .._node import node
from .._process import EXITING, Node
from ._driver import NodeDriver

__all__ = ["otp_driver", "otp_node"]


@pytest.fixture
async def otp_node() -> AsyncIterator[Node]:
    """A running otp node whose main process is the test.

    If an exit signal ends the main process (say, a linked process exits with
    ``otp.SHUTDOWN`` while the test does not trap exits), the test fails with
    :class:`otp.ProcessExited` carrying that reason, even a normal one."""
    ended: list[Any] = []
    async with node() as the_node:
        main = the_node.main._proc if the_node.main is not None else None
        try:
            yield the_node
        except BaseException:
            if main is not None and main.state == EXITING:
                ended.append(main.exit_reason)
            raise
    if ended:
        raise ProcessExited(ended[0])


@pytest.fixture
def otp_driver() -> Iterator[NodeDriver]:
    """A node on a virtual clock, driven synchronously (see :class:`NodeDriver`)."""
    driver = NodeDriver()
    try:
        yield driver
    finally:
        if not driver.closed:
            driver.close()
