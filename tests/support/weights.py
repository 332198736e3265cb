"""Write new weights into an HF model folder, as a (bad or different) training run would."""

from __future__ import annotations

from pathlib import Path


def perturb_weights(src: str | Path, dest: str | Path, noise: float, seed: int = 0) -> None:
    """Save the model at ``src`` plus Gaussian noise (std ``noise``) on every weight to ``dest`` (may be ``src``)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    model.save_pretrained(dest)
