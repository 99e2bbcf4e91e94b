"""Clients of outside services, apart from the web features that configure them.

`egress` is the policy every request sent on a user's behalf goes through, `host_slots` the
per-host limit on requests in flight; `openai_compatible` the client of OpenAI-compatible chat
endpoints that the web app's *Check connection* and the worker's pilot arms share. Nothing here
imports a web feature, FastAPI or SQL (an import contract in pyproject.toml), so the pure pilot
engine can use it.
"""
