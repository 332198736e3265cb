"""Helpers of the router tests: a hashing stand-in embedder and synthetic routing rows."""

from __future__ import annotations

import hashlib
import math
import random
import re

import numpy as np


class HashEmbedder:
    """Deterministic bag-of-words vectors (unit length): fast stand-in for the sentence model."""

    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9']+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n else out[i]
        return out


DOMAIN_WORDS = {"code": "python function bug compile class list", "reasoning": "why prove logic puzzle deduce sum",
                "automation": "cron workflow schedule deploy webhook yaml"}


def synthetic_rows(n: int = 200, seed: int = 0, separation: float = 1.5) -> list[dict]:
    """Routing rows whose label is separable from the confidence features (and domains from words)."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        domain = list(DOMAIN_WORDS)[i % 3]
        words = DOMAIN_WORDS[domain].split()
        prompt = " ".join(r.choice(words) for _ in range(5)) + f" item {r.randint(0, 999)}"
        label = int(r.random() < 0.4)
        mean = -0.3 - separation * label + r.gauss(0, 0.3)
        rows.append({"prompt": prompt, "domain": domain, "label": label, "base_mean_logprob": mean,
                     "base_min_logprob": 3 * mean + r.gauss(0, 0.3), "base_entropy": -0.8 * mean + r.gauss(0, 0.1),
                     "base_length": math.log1p(r.randint(3, 30))})
    return rows
