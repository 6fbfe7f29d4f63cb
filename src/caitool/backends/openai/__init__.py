"""Any OpenAI-compatible server, through the official ``openai`` SDK: ``backend`` sends the
requests and learns what the server honours, ``scoring`` scores options three ways (echoed
log-probabilities, top log-probabilities, sampled answers) and reads the server's answers."""

from caitool.backends.openai.backend import OpenAIBackend

__all__ = ["OpenAIBackend"]
