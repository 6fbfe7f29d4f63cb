"""Exact and near-duplicate texts found among hundreds of thousands, in flat memory.

A text is normalised (Unicode NFKC, lower case, every run of non-word characters one space)
before it is compared, so case, punctuation and spacing never make two prompts differ.
Exact duplicates are found by a 64-bit digest of the normalised text. Near duplicates are
texts whose sets of character 5-grams overlap by at least a Jaccard similarity threshold,
found with MinHash and locality-sensitive hashing: each text gets ``PERMUTATIONS`` minimum
hashes, the signature is cut into bands, and texts that share a band are candidates, kept or
refused by the share of their signatures that agree.

Memory is what sets this apart from a general library (datasketch keeps a Python set per
band bucket, several hundred bytes a band): each text kept costs its 16-bit signature (128
bytes) and one 12-byte entry per band in sorted NumPy arrays, with new entries held in a small
dict until it is merged in. ``bench/dedup.py`` measures both at the paper's scale.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PERMUTATIONS = 64
SHINGLE = 5
# New band entries wait in a dict; past this many they are merged into the sorted arrays,
# so a merge (a sort) happens once per this many entries, not once per text.
MERGE_AT = 1 << 16
# A pair exactly at the threshold is found this often; one 0.1 above it, 99 times in 100.
RECALL = 0.85
_NON_WORD = re.compile(r"[\W_]+")
_APOSTROPHES = re.compile(r"['\u2019]")


def normalise(text: str) -> str:
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).lower())
    return _NON_WORD.sub(" ", text).strip()


def digest(normalised: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalised.encode(), digest_size=8).digest(), "big")


def bands_for(threshold: float, permutations: int = PERMUTATIONS) -> tuple[int, int]:
    """(bands, rows), bands x rows <= ``permutations``: the most rows per band (the fewest
    candidates to check below the threshold) that still make a pair at the threshold a
    candidate with probability :data:`RECALL` (higher just above it)."""
    for rows in range(permutations, 0, -1):
        bands = permutations // rows
        if expected_candidate_rate(threshold, bands, rows) >= RECALL:
            return bands, rows
    return permutations, 1


def expected_candidate_rate(similarity: float, bands: int, rows: int) -> float:
    """The chance that two texts this similar share a band (LSH's S-curve)."""
    return 1 - (1 - similarity**rows) ** bands


@dataclass
class Match:
    """Why a text was refused: an exact or a near duplicate of an earlier text."""

    kind: str            # "exact" or "near"
    of: str              # the earlier text's key (a record id)
    similarity: float


class _BandIndex:
    """Band keys -> the index of the first text that had them: sorted arrays plus a dict."""

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self.keys = np.zeros(0, dtype=np.uint64)
        self.owners = np.zeros(0, dtype=np.int32)
        self.pending: dict[int, int] = {}

    def candidates(self, keys: Any) -> set[int]:
        np = self._np
        found = {self.pending[k] for k in keys.tolist() if k in self.pending}
        if len(self.keys):
            left = np.searchsorted(self.keys, keys, side="left")
            right = np.searchsorted(self.keys, keys, side="right")
            for lo, hi in zip(left.tolist(), right.tolist()):
                found.update(self.owners[lo:hi].tolist())
        return found

    def add(self, keys: Any, owner: int) -> None:
        for key in keys.tolist():
            self.pending.setdefault(key, owner)
        if len(self.pending) >= MERGE_AT:
            self.merge()

    def merge(self) -> None:
        np = self._np
        if not self.pending:
            return
        keys = np.fromiter(self.pending.keys(), dtype=np.uint64, count=len(self.pending))
        owners = np.fromiter(self.pending.values(), dtype=np.int32, count=len(self.pending))
        keys, owners = np.concatenate([self.keys, keys]), np.concatenate([self.owners, owners])
        order = np.argsort(keys, kind="stable")
        self.keys, self.owners = keys[order], owners[order]
        self.pending = {}

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.owners.nbytes)


@dataclass
class DuplicateIndex:
    """Texts seen so far; :meth:`check` says whether a new one repeats one of them.

    ``threshold`` is the Jaccard similarity of 5-gram sets at or above which a text is a
    near duplicate (1 or more: exact duplicates only)."""

    threshold: float = 0.7
    seed: int = 0
    _exact: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _names: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        import numpy as np

        self._np = np
        self.near = self.threshold < 1
        self.bands, self.rows = bands_for(min(self.threshold, 0.99))
        rng = np.random.default_rng(self.seed)
        # Multiply-shift hashing: an odd multiplier and an offset per permutation, mod 2**64.
        self._mul = rng.integers(1, 2**63, PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._add = rng.integers(0, 2**63, PERMUTATIONS, dtype=np.uint64)
        self._band_salt = rng.integers(1, 2**63, (self.bands, self.rows), dtype=np.uint64)
        self._signatures = np.zeros((1024, PERMUTATIONS), dtype=np.uint16)
        self._index = _BandIndex()

    def __len__(self) -> int:
        return len(self._exact)

    # -- signatures, a batch at a time (NumPy over every shingle of the batch at once) -------

    def signatures(self, normalised: Sequence[str]) -> Any:
        """A (texts, PERMUTATIONS) array of 64-bit minimum hashes."""
        np = self._np
        if not normalised:
            return np.zeros((0, PERMUTATIONS), dtype=np.uint64)
        # Each text padded to one shingle at least; a NUL between texts keeps shingles apart.
        encoded = [t.encode().ljust(SHINGLE, b"\0") + b"\0" for t in normalised]
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
        lengths = np.array([len(e) for e in encoded])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        count = len(data) - SHINGLE + 1
        hashes = np.zeros(count, dtype=np.uint64)
        prime = np.uint64(1099511628211)
        for offset in range(SHINGLE):
            hashes = hashes * prime + data[offset:offset + count]
        # Shingles that start in a text and end in it (not in the separator or the next text).
        shingles = lengths - SHINGLE  # per text: its padded length minus the separator, minus 4
        keep = np.zeros(count, dtype=bool)
        for start, number in zip(starts.tolist(), shingles.tolist()):
            keep[start:start + number] = True
        hashes = hashes[keep]
        offsets = np.concatenate([[0], np.cumsum(shingles)[:-1]])
        permuted = hashes[:, None] * self._mul[None, :] + self._add[None, :]
        return np.minimum.reduceat(permuted, offsets, axis=0)

    def _band_keys(self, signature: Any) -> Any:
        np = self._np
        rows = signature[: self.bands * self.rows].reshape(self.bands, self.rows)
        keys = (rows * self._band_salt).sum(axis=1)
        return keys ^ np.arange(self.bands, dtype=np.uint64)

    # -- checking and adding -----------------------------------------------------------------

    def check(self, name: str, normalised: str, signature: Any) -> Match | None:
        """Whether ``normalised`` repeats a text seen before; if not, it is added as ``name``."""
        key = digest(normalised)
        if key in self._exact:
            return Match("exact", self._exact[key], 1.0)
        bands = None
        if self.near:
            bands = self._band_keys(signature)
            short = self._short(signature)
            best: tuple[int, float] | None = None
            for owner in self._index.candidates(bands):
                similarity = float((self._signatures[owner] == short).mean())
                if similarity >= self.threshold and (best is None or similarity > best[1]):
                    best = (owner, similarity)
            if best is not None:
                return Match("near", self._names[best[0]], best[1])
        self._add_new(name, key, signature, bands)
        return None

    def _short(self, signature: Any) -> Any:
        # The top 16 bits of each minimum: two different minima agree by chance 1 in 65,536.
        return (signature >> self._np.uint64(48)).astype(self._np.uint16)

    def add(self, name: str, normalised: str, signature: Any) -> None:
        """Remember a text without asking (a seed whose repeats among the seeds are the
        user's own business)."""
        key = digest(normalised)
        if key in self._exact:
            return
        self._add_new(name, key, signature, self._band_keys(signature) if self.near else None)

    def _add_new(self, name: str, key: int, signature: Any, bands: Any) -> None:
        np = self._np
        owner = len(self._names)
        self._exact[key] = name
        self._names.append(name)
        if bands is None:
            return
        if owner >= len(self._signatures):
            grown = np.zeros((max(1024, len(self._signatures) * 2), PERMUTATIONS), dtype=np.uint16)
            grown[: len(self._signatures)] = self._signatures
            self._signatures = grown
        self._signatures[owner] = self._short(signature)
        self._index.add(bands, owner)

    def check_texts(self, names: Sequence[str], texts: Sequence[str]) -> list[Match | None]:
        """:meth:`check` for a batch, in order (a later text is checked against earlier ones
        of the same batch too)."""
        normalised = [normalise(t) for t in texts]
        signatures = self.signatures(normalised) if self.near else [None] * len(texts)
        return [self.check(name, norm, sig) for name, norm, sig in zip(names, normalised, signatures)]

    def add_texts(self, names: Sequence[str], texts: Sequence[str]) -> None:
        normalised = [normalise(t) for t in texts]
        signatures = self.signatures(normalised) if self.near else [None] * len(texts)
        for name, norm, sig in zip(names, normalised, signatures):
            self.add(name, norm, sig)

    @property
    def nbytes(self) -> int:
        """What the NumPy parts hold (the dicts of digests and names come on top)."""
        return int(self._signatures.nbytes + self._index.nbytes)
