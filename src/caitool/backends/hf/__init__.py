"""In-process transformers backend: ``backend`` loads the model and runs generation and
scoring, ``batching`` sizes the batches (backing off on running out of memory),
``prefix_cache`` keeps the prompts' shared few-shot prefix, and ``shared_prefix`` attends to
it once per batch."""

from caitool.backends.hf.backend import HFBackend

__all__ = ["HFBackend"]
