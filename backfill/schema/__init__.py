"""Schema steps for expand and contract: migration operations, the write guard,
the gap waiter every DDL statement goes through, the deploy-time check, and the
`makebackfill` scaffold.

Migrations import this package: it never imports the engine or pacing, so
applying a migration loads no runtime.
"""
