"""Durable jobs: the store (SQLite + a directory), the worker side that runs them, and the ingress
side that queues them and re-queues the ones a lost replica left behind."""
