"""The values on storemon's topics: one codec module per message type.

Each module encodes its message for producers and decodes and checks it for
consumers, with the per-field rules of storemon.inputs.values, so a record is
accepted or rejected the same way wherever it comes from, and always as its
JSON Schema in schemas/ describes it (`schemas` loads those, one test each):

- `polls`: `store-status` (one poll, or a batch of one store's polls);
- `schedules`: `store-hours`; `zones`: `store-timezones`;
- `report_requests`: `report-requests`; `report_tasks`: `report-tasks`;
- `dead_letters`: `store-status-dlq`;
- `records`: what they share (a JSON object value, a key that names the store).
"""
