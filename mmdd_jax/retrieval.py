"""Cross-modal retrieval evaluation (plain NumPy, as big_vision's evaluators).

Instance ``i`` of the query modality matches instance ``i`` of the candidate
modality. Direction ``"VT"`` = vision queries retrieving text (letters V, A, T, D).

**Ties** are broken pessimistically: the 0-based rank of the true match is the
number of *other* candidates whose score is ``>=`` its score. A constant scorer thus
gets rank ``N−1`` and R@k = 0 for every k < N, so a degenerate model is never
flattered by index order.
"""

from __future__ import annotations

from itertools import permutations
from typing import Mapping, Sequence

import numpy as np

from embed.store import MODALITY_LETTERS

KS = (1, 5, 10)


class NonFiniteScores(FloatingPointError):
  """An evaluator was given NaN/inf embeddings, scores or probabilities (a NaN
  similarity would rank as a hit). The message names what and the first bad row."""


def check_finite_rows(a, what: str) -> None:
  """Raises :class:`NonFiniteScores` naming ``what`` and the first non-finite row."""
  a = np.asarray(a)
  bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1) if a.ndim else ~np.isfinite(a)[None]
  if bad.any():
    raise NonFiniteScores(f"{what}: expected finite values, found NaN or inf at row "
                          f"{int(np.argmax(bad))} (of {a.shape[0] if a.ndim else 1})")


def true_ranks(queries: np.ndarray, candidates: np.ndarray, block: int = 1024,
               what: str = "retrieval") -> np.ndarray:
  """0-based pessimistic rank of candidate ``i`` for query ``i``; non-finite inputs are
  refused (:class:`NonFiniteScores`): a NaN score would otherwise count as a hit."""
  q = np.asarray(queries, np.float32)
  c = np.asarray(candidates, np.float32)
  check_finite_rows(q, f"{what} queries")
  check_finite_rows(c, f"{what} candidates")
  if q.shape[0] != c.shape[0]:
    raise ValueError(f"queries and candidates: expected equal counts, found {q.shape[0]} and {c.shape[0]}")
  n = q.shape[0]
  ranks = np.empty(n, np.int64)
  for s in range(0, n, block):
    sim = q[s:s + block] @ c.T                               # [b, n]
    rows = np.arange(sim.shape[0])
    own = sim[rows, s + rows][:, None]
    ranks[s:s + block] = (sim >= own).sum(1) - 1             # others scoring >= own
  return ranks


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
  """Recall@k in percent."""
  return {f"R@{k}": float(100.0 * np.mean(ranks < k)) for k in ks}


def directions(modalities: Sequence[str]) -> list[str]:
  """Ordered pairs as letter strings, e.g. ``[vision, audio, text]`` → VA, VT, AV, …"""
  letters = [MODALITY_LETTERS[m] for m in modalities]
  return [a + b for a, b in permutations(letters, 2)]


PAPER_ORDER = ["VT", "TV", "VA", "AV", "TA", "AT", "DT", "TD", "VD", "DV", "AD", "DA"]


def retrieval_metrics(embeddings: Mapping[str, np.ndarray], ks: Sequence[int] = KS,
                      where: str = "test split"
                      ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
  """All ordered modality pairs.

  Args:
    embeddings: ``{modality: [N, e]}`` (normalised or not; cosine is not assumed).
    where: what the embeddings are, for the error on non-finite rows.
  Returns:
    ``(per_direction, avg)``: ``{"VT": {"R@1":…, "R@5":…, "R@10":…}, …}`` and the
    average over directions of each recall.
  """
  mods = list(embeddings)
  for m in mods:
    check_finite_rows(embeddings[m], f"{where}, modality '{m}' embeddings")
  letter = {m: MODALITY_LETTERS[m] for m in mods}
  per = {}
  for a in mods:
    for b in mods:
      if a != b:
        per[letter[a] + letter[b]] = recall_at_k(true_ranks(embeddings[a], embeddings[b]), ks)
  order = [d for d in PAPER_ORDER if d in per] + sorted(d for d in per if d not in PAPER_ORDER)
  per = {d: per[d] for d in order}
  avg = {f"R@{k}": float(np.mean([v[f"R@{k}"] for v in per.values()])) for k in ks}
  return per, avg
