"""The Celery worker and the pure pilot code it runs."""

import logging
import os

# bitsandbytes looks for an optional CPU kernel on the model hub when it is first imported
# (transformers imports it while loading a model) and warns when the kernel is absent. The
# pilot never fetches from a hub; bitsandbytes' built-in kernel is used. Set here, in the
# package every entry point imports first, so the level is in place before that import.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# oneDNN, which runs torch's bf16 matmuls on the CPU, caches a compiled primitive for every
# matmul shape it meets, up to 1,024 of them. Training on examples of varying lengths meets a
# new shape at almost every step, so the cache grew the worker's resident set by ~300 MB on
# the default model (bench/README.md, memory_pilot.py). 128 entries hold what one step and its
# neighbours reuse: training steps were no slower in the whole pilot (~6% on the arm alone),
# where 32 entries cost ~15% a step. oneDNN reads it when it makes its first primitive, so it
# is set before any torch work; a value given in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")
