"""Tokenizer metadata for GGUF: byte-level BPE vocabulary, merges, special tokens, chat template.

llama.cpp re-implements each model family's pre-tokenizer (the regex that splits
text before BPE) and picks it by the name in ``tokenizer.ggml.pre``. Like
llama.cpp's converter, the name is found by tokenising a fixed probe text and
hashing the token ids; an unknown hash is an error rather than a silent
fallback, because a wrong pre-tokenizer changes the model's input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from cogumi.compress.errors import CompressError

# The probe text and hashes of llama.cpp's convert_hf_to_gguf.py (get_vocab_base_pre).
PROBE_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
KNOWN_PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # GPT-2
}


@dataclass(frozen=True)
class VocabInfo:
    """Which tokenizer model and pre-tokenizer were written."""

    model: str
    pre: str | None
    n_tokens: int


def _looks_special(token: str) -> bool:
    """Added tokens llama.cpp's converter treats as control tokens even when not flagged special."""
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def _is_byte_level_bpe(tokenizer_json: dict[str, Any]) -> bool:
    if (tokenizer_json.get("model") or {}).get("type") != "BPE":
        return False
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return any(p.get("type") == "ByteLevel" for p in parts if p)


def detect_pre_tokenizer(tokenizer: Any) -> str | None:
    """The llama.cpp pre-tokenizer name of an HF tokenizer, or None when unknown."""
    digest = sha256(str(tokenizer.encode(PROBE_TEXT)).encode()).hexdigest()
    return KNOWN_PRE_TOKENIZERS.get(digest)


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and len(ids) > 1 and ids[0] == bos


def bpe_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and GGUF token types, one per id up to ``vocab_size``."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []  # gguf.TokenType values (an IntEnum)
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            info = decoder.get(i)
            if (info is not None and info.special) or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def write_vocab(writer: Any, model_dir: Path, hparams: dict[str, Any], tokenizer_pre: str | None,
                where: str) -> VocabInfo:
    """Add the tokenizer keys of ``model_dir`` to a GGUF writer.

    Args:
        writer: a ``gguf.GGUFWriter`` before its header is written.
        model_dir: HF folder holding tokenizer.json (+ tokenizer_config.json, chat template).
        hparams: the model's config.json.
        tokenizer_pre: llama.cpp pre-tokenizer name, or None to detect it.
        where: step/file named in errors.

    Raises:
        CompressError: no tokenizer, a tokenizer type this exporter cannot write, or an unknown pre-tokenizer.
    """
    import gguf
    from transformers import AutoTokenizer

    tj_path = model_dir / "tokenizer.json"
    if not tj_path.is_file():
        raise CompressError(f"{model_dir} has no tokenizer.json", where,
                            "save the tokenizer next to the model (tokenizer.save_pretrained)")
    if not _is_byte_level_bpe(json.loads(tj_path.read_text())):
        raise CompressError("only byte-level BPE tokenizers (Llama 3, SmolLM, Qwen2, Mistral-Nemo) can be written; "
                            "this one is SentencePiece-style", str(tj_path),
                            "convert SentencePiece models with llama.cpp's convert_hf_to_gguf.py")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab_size = int(hparams.get("vocab_size") or len(tokenizer))
    if max(tokenizer.get_vocab().values()) >= vocab_size:
        raise CompressError(f"the tokenizer has ids beyond the model's vocab_size {vocab_size}", str(tj_path),
                            "resize the model's embeddings to the tokenizer before exporting")
    pre = tokenizer_pre or detect_pre_tokenizer(tokenizer)
    if pre is None:
        raise CompressError("unknown BPE pre-tokenizer (its probe hash is not in the table of known ones)",
                            str(tj_path), "set compress.gguf.tokenizer_pre to the llama.cpp name "
                            f"({', '.join(sorted(set(KNOWN_PRE_TOKENIZERS.values())))}, ...)")
    tokens, types = bpe_tokens(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    _prefer_model_eos(special, model_dir, len(tokens))
    special.add_to_gguf(writer, quiet=True)
    tok_cfg = model_dir / "tokenizer_config.json"
    if tok_cfg.is_file() and isinstance(json.loads(tok_cfg.read_text()).get("add_prefix_space"), bool):
        writer.add_add_space_prefix(json.loads(tok_cfg.read_text())["add_prefix_space"])
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(_adds_bos(tokenizer))
    return VocabInfo("gpt2", pre, len(tokens))


def _prefer_model_eos(special: Any, model_dir: Path, n_vocab: int) -> None:
    """Use the end-of-turn id generation stops on (generation_config / config) as GGUF eos.

    A tokenizer_config ``eos_token`` can disagree with the id the model was trained
    to stop on (e.g. a tokenizer rebuilt from a GGUF); llama.cpp stops on ``eos``.
    """
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if not path.is_file():
            continue
        eos = json.loads(path.read_text()).get("eos_token_id")
        ids = [e for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int) and 0 <= e < n_vocab]
        if ids:
            if special.special_token_ids.get("eos") not in ids:
                special.special_token_ids["eos"] = ids[0]
            return
