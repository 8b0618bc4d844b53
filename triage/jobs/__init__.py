"""Batch re-triage jobs: durable items in the case database, claimed by any number of workers.

rows.py       the jobs and job_items tables (Alembic revision 0003)
models.py     filters, progress, summary, dry-run estimate
ratelimit.py  requests- and tokens-per-minute limits around the LLM drafter
service.py    create (from filters), estimate, work (claim, draft, commit), cancel, summarise
"""
