"""The dashboard, its JSON API and the Prometheus metrics, over the engine's service."""
