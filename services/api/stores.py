"""Live store queries: `GET /stores/{store_id}` and `GET /stores/{store_id}/polls`.

The API holds no state: it sends each query to the worker that owns the store's
partition (murmur2 of the store_id, as producers partition polls) and relays its
answer. Which worker owns which partition it asks of the workers of
STOREMON_WORKER_URLS (`GET /partitions`, the group's last assignment), and asks again
when an owner turns the query away or cannot be reached: after a rebalance, once.
Still no owner: 503 with Retry-After, never an answer from the wrong state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from storemon.api.context import OWNERS, SESSION, SETTINGS
from storemon.api.errors import ApiError
from storemon.api.owners import WORKER_TIMEOUT_S, Owners
from storemon.inputs.values import RowError, parse_store_id
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import worker_app_id

log = logging.getLogger("storemon.api")

RETRY_AFTER_S = "1"


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "no_owner", message, {"Retry-After": RETRY_AFTER_S})


async def _forward(request: web.Request, owners: Owners, store_id: str) -> web.Response:
    """The answer of the owner of `store_id`'s partition to this request."""
    for attempt in (1, 2):
        if attempt == 2 or owners.partitions is None:
            await owners.refresh()
        if owners.partitions is None:
            raise _unavailable("no worker answers on STOREMON_WORKER_URLS; try again shortly")
        partition = partition_of(store_id.encode(), owners.partitions)
        owner = owners.by_partition.get(partition)
        if owner is None:
            continue
        target = owner.join(URL(request.rel_url.raw_path_qs, encoded=True))
        try:
            async with request.app[SESSION].get(
                target, timeout=aiohttp.ClientTimeout(WORKER_TIMEOUT_S)
            ) as response:
                body = await response.read()
                if response.status == 503 and attempt == 1:
                    continue  # not (or no longer) the owner: ask who is
                headers = {
                    name: response.headers[name]
                    for name in ("Retry-After",)
                    if name in response.headers
                }
                return web.Response(
                    body=body,
                    status=response.status,
                    content_type="application/json",
                    headers=headers,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("owner %s of partition %d did not answer: %s", owner, partition, exc)
    raise _unavailable(
        f"partition {partition} has no worker answering for it now (rebalancing?); "
        "try again shortly"
    )


async def _query(request: web.Request) -> web.Response:
    try:
        store_id = parse_store_id(request.match_info["store_id"])
    except RowError as exc:
        raise ApiError(400, "bad_request", f"store_id: {exc.reason}") from None
    return await _forward(request, request.app[OWNERS], store_id)


async def _workers(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[SESSION] = session
        settings = app[SETTINGS]
        app[OWNERS] = Owners(settings.worker_urls, session, worker_app_id(settings))
        yield


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_workers)
    app.router.add_get("/stores/{store_id}", _query)
    app.router.add_get("/stores/{store_id}/polls", _query)
