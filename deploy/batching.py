"""Many connections, one model: the requests waiting when the model is free run as one batched call.

`BatchScheduler` owns the one thread that calls the model. Connections hand it prepared requests
(decoded and adapted in other threads); each round it takes the requests waiting, oldest first, up to
`max_rows` environments, and runs them as one call. A round waits for requests still being prepared,
at most `max_wait_s`, so that clients stepping in lockstep (the evaluator's one connection per
environment) land in the same call instead of in one call each.

Fairness: a connection has at most one request in the scheduler (it waits for its reply before it
reads its next frame), and rounds take requests in arrival order, so a request runs in the first call
that starts after it arrived, whatever other clients send, as long as the rows waiting fit `max_rows`
(`max_rows` >= the largest request x the connections): it waits for at most the call in progress.
`CallInfo.waited_calls` counts the calls that started between its arrival and its own (0 when fair).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 64  # environments per model call: the challenge's 64-port endpoint, one env each
DEFAULT_MAX_WAIT_S = 0.005  # for requests still being decoded; a GPU call of SmolVLA is ~50-100 ms


@dataclass(frozen=True)
class BatchingConfig:
    max_rows: int = DEFAULT_MAX_ROWS
    max_wait_s: float = DEFAULT_MAX_WAIT_S


@dataclass(frozen=True)
class CallInfo:
    """How a request was run: the rows of its model call, and the calls it waited for."""

    rows: int
    requests: int
    waited_calls: int


@dataclass
class _Waiting:
    item: Any
    rows: int
    calls_before: int  # calls started before this request arrived
    future: Future = field(default_factory=Future)


@dataclass
class SchedulerStats:
    calls: int = 0
    rows: int = 0
    largest: int = 0


class BatchScheduler[Item, Result]:
    """`run(items) -> results` (one model call for them) on one thread, over the items waiting; each
    item's future gets `(result, CallInfo)`."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], list[Result]],
        rows: Callable[[Item], int],
        config: BatchingConfig,
    ) -> None:
        self._run = run
        self._rows = rows
        self.config = config
        self.stats = SchedulerStats()
        self._condition = threading.Condition()
        self._waiting: deque[_Waiting] = deque()
        self._preparing = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="b1k-serve-model", daemon=True)
        self._thread.start()

    @contextmanager
    def preparing(self) -> Iterator[Callable[[Item], Future]]:
        """While a request is decoded: rounds wait for it (at most `max_wait_s`). Yields `submit`."""
        with self._condition:
            self._preparing += 1
        submitted = False

        def submit(item: Item) -> Future:
            nonlocal submitted
            submitted = True
            return self._submit(item, preparing=True)

        try:
            yield submit
        finally:
            if not submitted:
                with self._condition:
                    self._preparing -= 1
                    self._condition.notify_all()

    def submit(self, item: Item) -> Future:
        """Queue one request that was not announced with `preparing`."""
        return self._submit(item, preparing=False)

    def _submit(self, item: Item, preparing: bool) -> Future:
        rows = self._rows(item)
        if rows > self.config.max_rows:
            raise ValueError(f"a request of {rows} rows is above the {self.config.max_rows} rows of a call")
        with self._condition:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._preparing -= int(preparing)
            waiting = _Waiting(item, rows, calls_before=self.stats.calls)
            self._waiting.append(waiting)
            self._condition.notify_all()
        return waiting.future

    def close(self) -> None:
        """Stop after the round in progress; requests still waiting get an error."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=60)
        for waiting in self._waiting:
            waiting.future.set_exception(RuntimeError("the server is shutting down"))
        self._waiting.clear()

    # -- the model thread

    def _next_round(self) -> list[_Waiting]:
        """The requests of the next call: wait for one, then for those being prepared (bounded)."""
        with self._condition:
            while not self._waiting and not self._closed:
                self._condition.wait()
            deadline = time.monotonic() + self.config.max_wait_s
            while self._preparing > 0 and not self._closed and self._waiting_rows() < self.config.max_rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._condition.wait(left)
            round_, rows = [], 0
            while self._waiting and rows + self._waiting[0].rows <= self.config.max_rows:
                rows += self._waiting[0].rows
                round_.append(self._waiting.popleft())
            return round_

    def _waiting_rows(self) -> int:
        return sum(w.rows for w in self._waiting)

    def _loop(self) -> None:
        while True:
            round_ = self._next_round()
            if not round_:
                return  # closed
            self._call(round_)

    def _call(self, round_: list[_Waiting]) -> None:
        rows = sum(w.rows for w in round_)
        number = self.stats.calls
        self.stats.calls += 1
        self.stats.rows += rows
        self.stats.largest = max(self.stats.largest, rows)
        try:
            results = self._run([w.item for w in round_])
        except BaseException as exc:  # every request of the call gets the error; the thread goes on
            for waiting in round_:
                waiting.future.set_exception(exc)
            return
        for waiting, result in zip(round_, results, strict=True):
            waiting.future.set_result((result, CallInfo(rows, len(round_), number - waiting.calls_before)))
