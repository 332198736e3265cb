"""Phase 2 compression: 2:4 pruning, 4-bit AWQ/GPTQ, GGUF Q5_K_M export, zstd, each step gated on perplexity.

Modules, in pipeline order:

- ``config``       the ``compress`` config section (one sub-section per step)
- ``calibration``  calibration samples (curated or built-in ``texts``) and held-out text
- ``prune``        SparseGPT 2:4 / unstructured through llmcompressor (stored dense)
- ``quantize``     AWQ or GPTQ W4A16 through llmcompressor (AWQ runs on CPU too)
- ``gguf_export``  HF -> GGUF (Llama, Mistral, Qwen2) with ``gguf_vocab`` for the tokenizer
- ``gguf_check``   llama.cpp quantisation (Q5_K_M...), integrity check, round trip against HF
- ``lora_gguf``    PEFT LoRA -> GGUF LoRA adapters for llama.cpp
- ``archive``      zstd with a dictionary trained on weight samples, SHA-256 verified
- ``quality``      held-out perplexity (transformers / llama.cpp) and the gate
- ``report``       size table (JSON, Markdown) and bar chart
- ``steps``        the steps as plain functions over a run directory
- ``pipeline``     each step a Ray task writing a ``compress.<step>`` stage with a manifest
- ``commands``     ``cogumi compress``
"""
