"""`storemon api`: the HTTP API of system.md (aiohttp).

`create_app(settings)` is the application factory; the PostgreSQL pool and the
Kafka producer live in cleanup contexts, so they exist exactly while the
application runs. Routes are described in schemas/openapi.json, served at
/openapi.json.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from storemon.api import auth, health, page, reports, stores, webhooks
from storemon.api import events as ingest
from storemon.api.auth import auth_middleware
from storemon.api.batching import PartitionBatcher
from storemon.api.context import BATCHER, METRICS, POOL, PRODUCER, SETTINGS
from storemon.api.errors import json_errors
from storemon.api.metrics import Metrics, counting_middleware
from storemon.config import Settings
from storemon.database import reports_db
from storemon.kafka.async_producer import AsyncProducer
from storemon.kafka.topics import TOPIC_STATUS, input_partitions
from storemon.messages.schemas import openapi_document
from storemon.observability.logs import configure_logging

log = logging.getLogger("storemon.api")

APPLICATION_NAME = "storemon-api"


async def _database(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await reports_db.create_pool(
        app[SETTINGS], APPLICATION_NAME, min_size=2, max_size=20
    )
    yield
    await app[POOL].close()


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[PRODUCER] = AsyncProducer(settings, asyncio.get_running_loop())
    app[BATCHER] = PartitionBatcher(
        app[PRODUCER], settings.topic(TOPIC_STATUS), functools.partial(input_partitions, settings)
    )
    yield
    await app[BATCHER].close()
    await app[PRODUCER].close()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # auth inside json_errors: a 404 or 405 it lets through still answers as JSON.
        middlewares=[counting_middleware(metrics), json_errors, auth_middleware(settings.tokens())],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.extend([_database, _kafka])
    reports.add_routes(app)
    # After reports' cleanup context: the sender waits on its status channel.
    app.cleanup_ctx.append(webhooks.sending)
    stores.add_routes(app)
    app.router.add_post("/events", ingest.post_events)
    health.add_routes(app)
    app.router.add_get("/openapi.json", openapi)
    page.add_routes(app)
    return app


def run_api(settings: Settings, loglevel: str = "info") -> None:
    """Serve until SIGINT or SIGTERM."""
    configure_logging(loglevel)
    log.info("API listening on http://%s:%d", settings.api_host, settings.api_port)
    auth.log_configuration(settings.tokens())
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        # One log line per request costs more than answering a status poll.
        access_log=log if loglevel.lower() == "debug" else None,
        print=None,
    )
