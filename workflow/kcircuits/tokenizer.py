"""Stage 5: the tokenizer -- a byte-level BPE trained on the training corpora, or a local one.

Saved in Hugging Face format so every later stage loads it with AutoTokenizer (no network). The
report says, per attribute, how many values have a first answer token no other value shares:
probing reads only the first answer token, so shared first tokens would over-credit a model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .resources import ATTRIBUTE_POOLS

END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"
REPORT_CONTEXT = "The answer is"  # any prompt works: the first answer token is read after it


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int):
    """A GPT-2-style byte-level BPE (no prefix space) trained on `texts`."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[END_OF_TEXT, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT, pad_token=PAD)


def load_tokenizer(path: str | Path):
    """Load a Hugging Face tokenizer folder from disk only."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def bos_prefix(tok, prepend_bos: bool) -> list[int]:
    """What goes before a prompt's tokens where the model is attributed or ablated: [BOS] when
    prepend_bos (circuits.prepend_bos; TransformerLens prepends it, so the original study's circuits
    saw it; for GPT-2 and the trained BPE it is <|endoftext|>, which also starts every training
    paragraph), else nothing. Positions read from a prompt's own tokens shift by its length."""
    if not prepend_bos:
        return []
    if tok.bos_token_id is None:
        raise ValueError("circuits.prepend_bos is true but the tokenizer has no BOS token; set it to false")
    return [tok.bos_token_id]


def first_answer_token(tok, prompt: str, answer: str) -> int:
    """Id of the first token of ' answer' as it is tokenized after `prompt`.

    Tokenizing prompt and prompt + ' ' + answer and reading the first new id works for byte-level
    BPE (GPT-2) and for tokenizers without a space convention alike; a tokenizer that merges across
    the prompt/answer boundary is an error rather than a silent mislabel.
    """
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    full = tok(prompt + " " + answer, add_special_tokens=False)["input_ids"]
    if full[: len(p)] != p or len(full) == len(p):
        raise ValueError(f"tokenizer merges prompt {prompt!r} with answer {answer!r} across the boundary")
    return full[len(p)]


def first_token_report(tok, pools: dict[str, list[str]]) -> dict:
    """Per attribute pool: values, distinct first tokens, values whose first token is their own."""
    report = {}
    for attr, pool_name in ATTRIBUTE_POOLS.items():
        by_token: dict[int, list[str]] = {}
        for value in pools[pool_name]:
            by_token.setdefault(first_answer_token(tok, REPORT_CONTEXT, value), []).append(value)
        shared = {tok.convert_ids_to_tokens(t): vs for t, vs in by_token.items() if len(vs) > 1}
        report[attr] = {
            "values": len(pools[pool_name]),
            "distinct_first_tokens": len(by_token),
            "unique_first_token_values": sum(len(vs) for vs in by_token.values() if len(vs) == 1),
            "shared_first_tokens": dict(sorted(shared.items())),
        }
    return report
