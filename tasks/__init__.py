"""Prefect tasks over the clients in ``promotion/``: retries, timeouts, logging, cache policy."""
