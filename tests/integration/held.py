"""Holding a real query's caller between the database's answer and its use of it.

SQLAlchemy runs an async engine's statements in a greenlet, so a listener can wait on an
asyncio event there (``await_``): the statement has run and its rows are fetched, but the
code that asked for them does not see them until the test lets it. Nothing of ours is
replaced; the test decides only *when* the real code goes on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.util import await_only


class Hold:
    """The first statement matching ``pattern`` pauses its caller after it ran."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE | re.DOTALL)
        self.reached = asyncio.Event()
        self.released = asyncio.Event()
        self._used = False

    def after_execute(
        self, _conn: Any, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
    ) -> None:
        if self._used or not self.pattern.search(statement):
            return
        self._used = True
        self.reached.set()
        await_only(self.released.wait())

    async def wait(self) -> None:
        """Until the statement has run and its caller is held."""
        await asyncio.wait_for(self.reached.wait(), 10)

    def release(self) -> None:
        """Let the held caller go on with the rows it read."""
        self.released.set()


@contextmanager
def held_after(pattern: str) -> Iterator[Hold]:
    """A ``Hold`` on every engine for the duration of the block."""
    hold = Hold(pattern)
    event.listen(Engine, "after_cursor_execute", hold.after_execute)
    try:
        yield hold
    finally:
        hold.release()
        event.remove(Engine, "after_cursor_execute", hold.after_execute)
