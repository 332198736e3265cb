"""Exact and MinHash-LSH near-duplicate removal (spec appendix), in process or on Ray Data."""
