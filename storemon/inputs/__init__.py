"""Parsing and validating the three inputs: status polls, business hours and time zones.

This package is the single place that knows the textual forms of report-semantics.md:

- `values`: per-value and per-row validators and `RowError` (used by the CSV
  readers, the Kafka loader, `POST /events` and the worker);
- `timestamps`: the vectorised timestamp parser the CSV readers use on whole columns;
- `csv_files`: the three CSV readers, with per-line errors.
"""
