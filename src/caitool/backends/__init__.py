"""Backends: one interface (:mod:`.base`), a registry (:mod:`.registry`), and the built-ins,
each in its own module: ``hf`` (in-process transformers), ``vllm`` and ``openai`` (any
OpenAI-compatible server)."""
