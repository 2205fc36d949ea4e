"""Ingest service: bulk load, HTTP events, and the Faust worker keeping per-store state."""
