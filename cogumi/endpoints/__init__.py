"""Metered calls to OpenAI-compatible (and local) models, shared by curate, evaluate and modifiers.

- :mod:`.metered`: :class:`~.metered.MeteredEndpoint` (cache + rate limit + retries + cost);
- :mod:`.retry`: the one retry policy (which failures, how long to wait);
- :mod:`.limiter`: the cluster-wide requests/tokens-per-minute limiter;
- :mod:`.cache`: the persistent response cache (a paid answer is never paid twice);
- :mod:`.quality_judge`: the quality-scoring judge's rubric; :mod:`.replies`: JSON out of replies.
"""
