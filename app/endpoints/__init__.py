"""The models a pilot may run on, as a web feature: registering local model directories and
OpenAI-compatible endpoints (vLLM, hosted APIs, TGI, Ollama's `/v1`, llama.cpp server), their
pages, API and stored settings.

The HTTP client the web app's "Check connection" and the worker's pilot arms share lives apart,
in `app.integrations.openai_compatible`, with `app.integrations.egress`, the policy every
request sent on a user's behalf goes through: the pilot engine uses them without this package.
"""
