"""Where the replicas run: a Ray cluster joined by address, or a local one started here.

The options are checked before Ray is imported, so a wrong flag costs nothing. Ray's own
logging is kept to errors: stderr is for caitool's messages, and what a replica's backend
warns about still reaches it (Ray forwards the workers' output).
"""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

from caitool.errors import CaitoolError

# Environment the replicas need that a cluster's workers do not inherit from this process:
# offline switches, caches and tokens for the hub, caitool's own settings.
FORWARDED_PREFIXES = ("HF_", "TRANSFORMERS_", "CAITOOL_", "VLLM_")
FORWARDED = ("TOKENIZERS_PARALLELISM",)


@dataclass
class RayOptions:
    address: str | None = None        # None: start a local Ray here
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float | None = None  # None: see cpus()

    def check(self) -> None:
        if self.replicas < 1:
            raise CaitoolError("--replicas must be at least 1")
        if self.gpus_per_replica < 0 or not math.isfinite(self.gpus_per_replica):
            raise CaitoolError("--gpus-per-replica must be 0 or more")
        if self.gpus_per_replica > 1 and self.gpus_per_replica != int(self.gpus_per_replica):
            raise CaitoolError("--gpus-per-replica above 1 must be a whole number of GPUs")
        if self.cpus_per_replica is not None and not (0 < self.cpus_per_replica < math.inf):
            raise CaitoolError("--cpus-per-replica must be more than 0")

    def cpus(self, cluster_cpus: float) -> float:
        """CPUs each replica reserves: one on a cluster that others (or the next command in
        a pipe) share, or with GPUs. On a local Ray started for this run alone, without
        GPUs, the replicas share its CPUs: Ray gives a worker as many torch threads as whole
        CPUs it holds, so one replica on a 2-core machine gets both. The batch feed holds
        no CPU, so the replicas never starve it."""
        if self.cpus_per_replica is not None:
            return self.cpus_per_replica
        if self.gpus_per_replica > 0 or self.address is not None:
            return 1.0
        share = cluster_cpus / self.replicas if cluster_cpus else 1.0
        return max(0.25, math.floor(share * 4) / 4)


def forwarded_env(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The driver's variables the replicas need (``extra``: e.g. the API key's variable)."""
    return {key: value for key, value in os.environ.items()
            if key.startswith(FORWARDED_PREFIXES) or key in FORWARDED or key in extra}


def connect(options: RayOptions, env: dict[str, str]) -> Any:
    """Join the cluster at ``options.address`` (``auto``: the one started on this machine
    with ``ray start``), or start a local one; returns the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise CaitoolError("--ray needs Ray Data: pip install 'caitool[ray]'") from None

    address = options.address or "local"
    # A local Ray's workers inherit this process's environment; a cluster's need it sent
    # (which also keeps them from reusing workers started before, so only there).
    remote = address != "local"
    # ray.init installs its own SIGINT/SIGTERM handlers (SIGTERM: a stack dump and an abort);
    # the command's own stay, so both end the run as Ctrl-C does, with Ray shut down after.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(address=address, include_dashboard=None if remote else False,
                 logging_level=logging.ERROR,
                 runtime_env={"env_vars": env} if env and remote else None)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaitoolError(f"cannot reach the Ray cluster at {address}: {first}") from None
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def cluster_cpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("CPU", 0))
