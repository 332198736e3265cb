"""Cogumi: distil, compress, route and serve a small domain-specialised LLM system on Ray."""

__version__ = "0.1.0"
