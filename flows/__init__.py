"""Prefect flows: the order of the promotion, approvals, branching and summaries."""
