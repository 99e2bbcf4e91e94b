"""The Celery worker and the pure pilot code it runs."""

import logging

# bitsandbytes looks for an optional CPU kernel on the model hub when it is first imported
# (transformers imports it while loading a model) and warns when the kernel is absent. The
# pilot never fetches from a hub; bitsandbytes' built-in kernel is used. Set here, in the
# package every entry point imports first, so the level is in place before that import.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
