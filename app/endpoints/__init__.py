"""The models a pilot may run on: local model directories and OpenAI-compatible endpoints."""
