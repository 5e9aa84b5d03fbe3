"""Sybil linking: accounts that extract together are scored and acted on as one.

Two accounts are linked when at least ``near_duplicate_links`` of one's rows are
near-duplicates (distance below the reference's ``eps``, but not identical: popular
inputs are sent by many customers) of rows the other sent — the
signature of one attacker splitting perturbations of the same seeds across accounts —
or when they belong to one sign-up cluster (:mod:`modelshield.monitor.signups`).
Groups are the connected components of the links (union-find).

The cross-account search runs over a bounded ring of the ``capacity`` most recent rows
of all accounts (numpy brute force), so its cost per row is capped.

Example:
    >>> import numpy as np
    >>> linker = SybilLinker(capacity=100, eps=1.0, min_links=2)
    >>> _ = linker.add("a", np.zeros((3, 16)))
    >>> _ = linker.add("b", np.full((3, 16), 0.01))
    >>> linker.groups()
    [['a', 'b']]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from modelshield.models.base import FloatArray
from modelshield.monitor.features import sketch_distances
from modelshield.monitor.sketch import SKETCH_DIMS


class SybilLinker:
    def __init__(self, *, capacity: int = 5000, eps: float = 1.0, min_links: int = 5) -> None:
        self.capacity = capacity
        self.eps = eps
        self.min_links = min_links
        self.ring = np.zeros((0, SKETCH_DIMS))
        self.owners: list[str] = []
        self.links: dict[tuple[str, str], int] = {}
        self.extra: list[list[str]] = []
        """Groups known from elsewhere (sign-up clusters)."""

    def add(self, account: str, sketches: FloatArray) -> list[tuple[int, float, str]]:
        """Fold in an account's rows; returns (row, distance, other account) for each
        row's nearest row of another account in the ring (if any)."""
        sketches = np.asarray(sketches, dtype=np.float64).reshape(-1, SKETCH_DIMS)
        nearest: list[tuple[int, float, str]] = []
        if len(self.ring) and len(sketches):
            owners = np.asarray(self.owners)
            other = owners != account
            if other.any():
                ring = self.ring[other]
                names = owners[other]
                d = sketch_distances(sketches, ring)
                best = d.argmin(axis=1)
                for i, j in enumerate(best.tolist()):
                    distance = float(d[i, j])
                    nearest.append((i, distance, str(names[j])))
                    # identical rows are popular inputs that many customers send (and
                    # teach an attacker nothing new); a Sybil splits *perturbations*
                    if 0.0 < distance < self.eps:
                        a, b = sorted((account, str(names[j])))
                        self.links[(a, b)] = self.links.get((a, b), 0) + 1
        self.ring = np.concatenate([self.ring, sketches])[-self.capacity :]
        self.owners = (self.owners + [account] * len(sketches))[-self.capacity :]
        return nearest

    def set_clusters(self, clusters: Iterable[list[str]]) -> None:
        self.extra = [list(c) for c in clusters]

    def groups(self) -> list[list[str]]:
        """Linked groups of two or more accounts, each sorted, largest first."""
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: str, b: str) -> None:
            parent[find(a)] = find(b)

        for (a, b), count in self.links.items():
            if count >= self.min_links:
                union(a, b)
        for members in self.extra:
            for other in members[1:]:
                union(members[0], other)
        found: dict[str, list[str]] = {}
        for x in list(parent):
            found.setdefault(find(x), []).append(x)
        return sorted((sorted(g) for g in found.values() if len(g) > 1), key=lambda g: (-len(g), g))

    def group_of(self, account: str) -> list[str]:
        for group in self.groups():
            if account in group:
                return group
        return [account]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ring": np.round(self.ring, 3).tolist(),
            "owners": self.owners,
            "links": [[a, b, c] for (a, b), c in self.links.items()],
            "extra": self.extra,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.ring = np.asarray(data.get("ring", []), dtype=np.float64).reshape(-1, SKETCH_DIMS)
        self.owners = [str(o) for o in data.get("owners", [])]
        self.links = {(str(a), str(b)): int(c) for a, b, c in data.get("links", [])}
        self.extra = [list(g) for g in data.get("extra", [])]
