"""OpenAI-compatible chat endpoints (vLLM, hosted APIs, TGI, Ollama's `/v1`, llama.cpp server).

`schemas` (what a caller configures and sends, what comes back, the answers' wire shapes),
`exceptions` (what a request ends in), `client` (the retrying client and its failure policy),
`parsing` (answers and errors read back), `check` (*Check connection*) and `lora` (vLLM's
runtime LoRA adapter calls). They import only the standard library, httpx, pydantic and
`app.integrations`.
"""
