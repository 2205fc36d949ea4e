"""HTTP API service (aiohttp)."""
