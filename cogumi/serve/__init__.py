"""Phase 5: the routed system on Ray Serve behind an OpenAI-compatible API.

Modules: ``config`` (the ``serve`` section), ``routing`` (Router protocol, built-in
cascade), ``worker``/``adapters`` (model + hot-swapped LoRA), ``service`` (routing
orchestration), ``api`` (FastAPI app, chat page), ``guard`` (body limit, path check,
cancel on disconnect), ``cancel`` (stopping generation between tokens), ``deployments`` (Serve app),
``runner``/``commands`` (``cogumi serve``).
"""

# Load the root config first: importing cogumi.models.inference before it can close an
# import cycle through phase packages whose __init__ imports the inference layer.
import cogumi.config  # noqa: F401, E402
