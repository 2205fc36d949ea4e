"""The worker's per-store state: its layout, the policies that keep it, and a reader.

- `layout`: table names, key and value encodings, checks of a changelog record;
- `day_merge`: how a batch of polls merges into the store-days it touches;
- `retention`: which polls and stores fall out of state;
- `reader`: follows the changelogs into a `StateView`.
"""
