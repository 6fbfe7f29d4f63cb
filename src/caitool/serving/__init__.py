"""``caitool serve-reward``: the RL reward of train-rloo/train-grpo over HTTP, for RL engines
that take their reward from a service (OpenRLHF's remote reward model, verl's reward
function). :mod:`protocol` reads requests, :mod:`scorer` computes the reward through the
trainers' own reward functions, :mod:`batching` groups concurrent requests, and
:mod:`reward_server` is the FastAPI app run by uvicorn; :mod:`verl` is the client function
verl's reward config points at."""
