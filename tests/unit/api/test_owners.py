"""Which worker owns which partition, as the API learns it (services/api/owners.py): only
from workers of its own deployment."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from storemon.api.owners import Owners


async def worker_saying(answer: dict) -> TestServer:
    """An HTTP server answering GET /partitions as a worker would."""
    app = web.Application()

    async def partitions(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app.router.add_get("/partitions", partitions)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_the_owners_come_from_a_worker_of_this_deployment_only():
    other = await worker_saying(
        {"app": "other-storemon-worker", "partitions": 4, "owners": {"0": "http://a:1"}}
    )
    own = await worker_saying(
        {"app": "prod-storemon-worker", "partitions": 4, "owners": {"0": "http://b:2"}}
    )
    try:
        async with aiohttp.ClientSession() as session:
            misled = Owners((str(other.make_url("/")),), session, "prod-storemon-worker")
            await misled.refresh()
            assert misled.partitions is None and misled.by_partition == {}
            owners = Owners(
                (str(other.make_url("/")), str(own.make_url("/"))), session,
                "prod-storemon-worker",
            )
            await owners.refresh()
            assert owners.partitions == 4
            assert {p: str(url) for p, url in owners.by_partition.items()} == {0: "http://b:2"}
    finally:
        await other.close()
        await own.close()
