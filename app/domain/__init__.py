"""Pure domain code, below both the web app and the worker: no FastAPI, no SQL, no torch.

`samples` (formats, splits, checks), `scoring` (the rubric and cost model) and the pilot
records, arm registry, metrics and bootstrap that the worker writes and the web reads.
"""
