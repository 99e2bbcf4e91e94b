"""The models a pilot may run on: local model directories and OpenAI-compatible endpoints
(vLLM, hosted APIs, TGI, Ollama's `/v1`, llama.cpp server).

`client` is the HTTP client the web app's "Check connection" and the worker's pilot arms
share: it imports only the standard library, httpx and pydantic, and `egress`, the policy
every request it sends on a user's behalf goes through.
"""
