"""Everything storemon says to Kafka, in one place.

- `topics`: topic and consumer-group names, each topic's configuration, and
  creating them (`ensure_topics`) or, where operations own them, checking them
  (`check_topics`);
- `clients`: the one builder of producer, consumer and admin configurations;
- `offsets`: end offsets and reading a range of a topic (state readers, tests);
- `partitioning`: murmur2, the partition a store's records belong to;
- `async_producer`: a producer awaited from asyncio (the API);
- `lag`: how far each consumer group is behind.
"""
