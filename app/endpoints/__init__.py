"""The models a pilot may run on: local model directories and OpenAI-compatible endpoints
(vLLM, hosted APIs, TGI, Ollama's `/v1`).

`app.endpoints.client` is the client that the web app's "Check connection" and the worker's
pilot arms share. It imports only the standard library, httpx and pydantic, so this package
file imports nothing: importing the client must not pull in the registry's ORM models.
"""
