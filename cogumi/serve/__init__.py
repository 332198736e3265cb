"""Phase 5: the routed system on Ray Serve behind an OpenAI-compatible API.

Modules: ``config`` (the ``serve`` section), ``worker``/``adapters`` (model + hot-swapped
LoRA), ``service`` (routing orchestration), ``api`` (FastAPI app, chat page), ``guard`` (body limit, path check,
cancel on disconnect), ``cancel`` (stopping generation between tokens), ``deployments`` (Serve app),
``runner``/``commands`` (``cogumi serve``). The routing contract, the built-in
router and its loader belong to :mod:`cogumi.route`.
"""

