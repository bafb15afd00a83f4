"""The PostgreSQL backend: cubeloop's `PostgresCheckpointer` tables, read and leased.

`client` runs asyncpg for synchronous callers (the store is read from the
UI's thread workers and the CLI), `store` lists threads, `leases` holds
advisory locks every host sees, `markers` keeps job markers in a table of
ours, and `schema` holds the DDL we are allowed to run: our own schema on
request (`init-markers`), and cubeloop's for a demo or a test server.
"""
