"""The report domain: the engine that turns polls, business hours and zones into the uptime
report of report-semantics.md (`engine`)."""
