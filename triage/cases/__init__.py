"""Durable cases for caseworker review: complaints, draft versions, decisions, audit, users and keys.

rows.py      SQLAlchemy tables (migrated by Alembic, revision 0002)
states.py    the case state machine: which action is allowed in which state
models.py    the shapes the API and CLI exchange with the service
users.py     users, roles, department scopes, hashed API keys
service.py   ingest, queue, decisions, audit, supervisor numbers
"""
