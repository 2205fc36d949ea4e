"""Reporter service: snapshots worker state, computes reports, stores CSVs in PostgreSQL."""
