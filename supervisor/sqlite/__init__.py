"""The SQLite backend: a read-only, incrementally refreshed view of a cubeloop file.

- `files`: opening a file read-only, its errors in one line, our index.
- `connection`: the one object that owns the connection and the troubles a
  crashed writer leaves (a hot journal, `-wal`/`-shm`, text that is not UTF-8).
- `sql`: the SQL, built by pure functions of the schema and the listing's scope.
- `rows`: rows the fast path cannot take (odd thread ids, odd tool-call ids).
- `messages`: the listing pass over `messages` into thread summaries.
- `side_tables`: what the small tables add (extra, requests, runs, leases, links).
- `early`: a preview read by a forked child before the app's imports.
- `store`: `SQLiteStore`, the `Store` the rest of the app takes.
"""
