"""What the API's handlers find on the application (typed keys)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from storemon.api.metrics import Metrics
from storemon.config import Settings
from storemon.kafka.async_producer import AsyncProducer

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
#: Set by the application's cleanup contexts while it runs.
POOL = web.AppKey("pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AsyncProducer)
