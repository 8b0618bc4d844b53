"""Complaint triage for government services: route, match typical problems, draft root cause and reply."""

__version__ = "0.1.0"
