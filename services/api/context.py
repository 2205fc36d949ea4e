"""What the API's handlers find on the application (typed keys)."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from aiohttp import web

from storemon.api.batching import PartitionBatcher
from storemon.api.metrics import Metrics
from storemon.api.owners import Owners
from storemon.config import Settings
from storemon.database.notifications import Listener
from storemon.kafka.async_producer import AsyncProducer

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
#: Set by the application's cleanup contexts while it runs.
POOL = web.AppKey("pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AsyncProducer)
#: The client the API asks workers with, and what they said of who owns what.
SESSION = web.AppKey("worker_session", aiohttp.ClientSession)
OWNERS = web.AppKey("owners", Owners)
#: Report status changes (GET /reports/{id}/events), and the API's shutdown begun.
STATUS_LISTENER = web.AppKey("status_listener", Listener)
STOPPING = web.AppKey("stopping", asyncio.Event)
#: Polls of concurrent POST /events requests, grouped into partition batches.
BATCHER = web.AppKey("batcher", PartitionBatcher)
