"""Which worker owns which state partition, as the workers last said (GET /partitions),
and what each owner holds of its partitions (GET /state)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

log = logging.getLogger("storemon.api")

#: A worker answers in milliseconds; one that takes this long is stuck.
WORKER_TIMEOUT_S = 5.0
#: The owners are asked again at most this often, however many queries find them moved.
REFRESH_EVERY_S = 0.25


class Owners:
    """Which worker (its base URL) owns which state partition, as the workers last said."""

    def __init__(
        self, workers: tuple[str, ...], session: aiohttp.ClientSession, app: str
    ) -> None:
        self._workers = [URL(url.rstrip("/")) for url in workers]
        #: The worker app id of this deployment: workers of another are not asked again.
        self._app = app
        self._session = session
        self._lock = asyncio.Lock()
        self._asked_at = float("-inf")
        self.partitions: int | None = None
        self.by_partition: dict[int, URL] = {}

    async def refresh(self) -> None:
        """Ask the workers again (unless just asked); keeps what is known if none answers."""
        async with self._lock:
            if time.monotonic() - self._asked_at < REFRESH_EVERY_S:
                return
            self._asked_at = time.monotonic()
            for worker in self._workers:
                try:
                    async with self._session.get(
                        worker / "partitions", timeout=aiohttp.ClientTimeout(WORKER_TIMEOUT_S)
                    ) as response:
                        if response.status != 200:
                            continue
                        answer = await response.json()
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    log.debug("worker %s did not say who owns what: %s", worker, exc)
                    continue
                if answer.get("app") != self._app:
                    log.warning("worker %s is of deployment %r, not %r: ignored",
                                worker, answer.get("app"), self._app)
                    continue
                self.partitions = int(answer["partitions"])
                self.by_partition = {
                    int(partition): URL(url) for partition, url in answer["owners"].items()
                }
                return



@dataclass(frozen=True)
class PartitionState:
    """What the owner of a state partition holds of it (the worker's GET /state)."""

    stores: int
    polls: int
    newest_poll_us: int | None


async def state_sizes(owners: Owners, session: aiohttp.ClientSession) -> dict[int, PartitionState]:
    """Each state partition's size and newest poll, asked of its owner (for the API's
    /metrics); partitions whose owner does not answer (a rebalance, a worker gone) are
    left out."""
    if owners.partitions is None:
        await owners.refresh()

    async def of(worker: URL) -> dict[int, PartitionState]:
        try:
            async with session.get(
                worker / "state", timeout=aiohttp.ClientTimeout(WORKER_TIMEOUT_S)
            ) as response:
                if response.status != 200:
                    return {}
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return {}
        return {int(p): PartitionState(**figures) for p, figures in answer["partitions"].items()}

    held: dict[int, PartitionState] = {}
    for answered in await asyncio.gather(*map(of, set(owners.by_partition.values()))):
        held |= answered
    return held
