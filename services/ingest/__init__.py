"""Ingest service: `storemon load` (bulk CSV loading) and the Faust worker keeping per-store
state."""
