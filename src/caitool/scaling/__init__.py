"""Running a record command's batch loop on a Ray cluster (``--ray``).

``replica.py`` is the actor each model replica lives in (no Ray import, so it is tested
without a cluster); ``cluster.py`` joins or starts Ray; ``engine.py`` is the Ray Data
pipeline that feeds batches to the replicas and writes what they return; ``storage.py``
reads and writes JSONL on object storage (``s3://``, ``gs://`` ...). Nothing here is imported
unless ``--ray`` is given.
"""

from __future__ import annotations


def is_uri(path: str | None) -> bool:
    """Whether ``path`` names object storage or another file system by scheme (s3://...)."""
    return bool(path) and "://" in str(path)
