"""Grouping similar short texts: character-trigram TF-IDF vectors, cosine
similarity, greedy grouping in a fixed order. Pure Python and deterministic:
the same texts in the same order always give the same groups.

Character trigrams suit residents' Finnish: inflected forms and typos of one
word share most of their trigrams (toimeentulotuki, toimeentulotukea,
toimentulotuki).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Sequence

GROUP_SIMILARITY = 0.45  # cosine to a group's centroid needed to join it

Vector = dict[str, float]


def trigrams(text: str) -> Counter:
    text = unicodedata.normalize("NFC", text).lower()
    text = " ".join(re.sub(r"[^\w\s]", " ", text).split())
    padded = f" {text} "
    return Counter(padded[i:i + 3] for i in range(len(padded) - 2))


def _normalised(vector: Vector) -> Vector:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {k: w / norm for k, w in vector.items()} if norm else {}


def tfidf(texts: Sequence[str]) -> list[Vector]:
    """Unit-length TF-IDF vectors (smoothed idf, as scikit-learn's default)."""
    counts = [trigrams(t) for t in texts]
    df: Counter = Counter()
    for c in counts:
        df.update(c.keys())
    n = len(texts)
    idf = {gram: math.log((1 + n) / (1 + d)) + 1 for gram, d in df.items()}
    return [_normalised({g: tf * idf[g] for g, tf in c.items()}) for c in counts]


def cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(k, 0.0) for k, w in a.items())


def group(texts: Sequence[str], threshold: float = GROUP_SIMILARITY) -> list[list[int]]:
    """Indices of ``texts`` in groups: each text joins the group whose centroid
    it is most similar to (at least ``threshold``), else starts a new one."""
    return group_vectors(tfidf(texts), threshold)


def group_vectors(vectors: Sequence[Vector], threshold: float = GROUP_SIMILARITY) -> list[list[int]]:
    """``group`` of texts whose TF-IDF vectors are already computed."""
    groups: list[list[int]] = []
    sums: list[Vector] = []
    centroids: list[Vector] = []
    for index, vector in enumerate(vectors):
        best, best_sim = -1, threshold
        for g, centroid in enumerate(centroids):
            sim = cosine(vector, centroid)
            if sim >= best_sim and (best < 0 or sim > best_sim):
                best, best_sim = g, sim
        if best < 0:
            groups.append([index])
            sums.append(dict(vector))
            centroids.append(vector)
            continue
        groups[best].append(index)
        total = sums[best]
        for k, w in vector.items():
            total[k] = total.get(k, 0.0) + w
        centroids[best] = _normalised(total)
    return groups


def most_central(indices: Sequence[int], vectors: Sequence[Vector]) -> int:
    """The member most similar to the others (the group's label)."""
    if len(indices) <= 2:
        return indices[0]
    total: Vector = {}
    for i in indices:
        for k, w in vectors[i].items():
            total[k] = total.get(k, 0.0) + w
    centroid = _normalised(total)
    return max(indices, key=lambda i: (cosine(vectors[i], centroid), -i))
