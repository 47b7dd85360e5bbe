"""Plain-Python core of release-promotion: models, configuration, Kustomize edits and clients.

Nothing in this package imports Prefect; flows and tasks build on it.
"""
