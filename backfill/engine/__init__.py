"""The runtime that fills a column: jobs and their lifecycle, slices, batches and revert.

Every caller (the CLI, the dashboard, the workers, a migration finishing a
few rows inline) acts through `service`, which asks `lifecycle` what is
allowed; `runner` walks a slice batch by batch, and `batch` fills one.
"""
