"""Model primitives of the evaluation: score chosen tokens, generate greedily (kcircuits.checkpoint loads).

Every knowledge metric reduces to one question asked many times: at position p of a token sequence,
what log-probability and what rank does the model give to token t? `score_tokens` answers a batch of
such queries; sequences are grouped by length (right padding, so positions stay 0..len-1) and only
the hidden states at queried positions go through the output head (for the default tiny model the
head over the vocabulary costs as much as the transformer body).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .metrics import target_logprob, target_rank

STOP_CHARS = ".\n"  # greedy answers end at a period or newline (see metrics.cut_answer)


def max_positions(model) -> int | None:
    cfg = model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def encode(tok, texts: list[str], offsets: bool = False):
    """Token ids (and character offsets) of each text, without special tokens.

    Calls the Rust tokenizer of a fast tokenizer directly (same ids, a third of the time of the
    Python wrapper: tokenizing is a visible share of a CPU evaluation).
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=offsets)
        return (enc["input_ids"], enc["offset_mapping"]) if offsets else enc["input_ids"]
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    ids = [e.ids for e in encodings]
    return (ids, [e.offsets for e in encodings]) if offsets else ids


def answer_token_ids(tok, prompts: list[str], answers: list[str]):
    """Prompt ids, prompt + ' ' + answer ids, and the first answer token (as
    tokenizer.first_answer_token does, batched; repeated prompts are tokenized once).

    A tokenizer that merges across the prompt/answer boundary is an error.
    Returns (prompt ids per prompt, full ids per prompt, first answer ids [N] int64).
    """
    unique = list(dict.fromkeys(prompts))
    unique_ids = dict(zip(unique, encode(tok, unique)))
    prompt_ids = [unique_ids[p] for p in prompts]
    full_ids = encode(tok, [p + " " + a for p, a in zip(prompts, answers)])
    first = np.empty(len(prompts), dtype=np.int64)
    for i, (p, f) in enumerate(zip(prompt_ids, full_ids)):
        if f[: len(p)] != p or len(f) == len(p):
            raise ValueError(f"tokenizer merges prompt {prompts[i]!r} with answer {answers[i]!r} across the boundary")
        first[i] = f[len(p)]
    return prompt_ids, full_ids, first


def check_lengths(model, sequences: list[list[int]], what: str) -> None:
    """A model cannot attend past its position table; say so instead of failing inside it."""
    limit = max_positions(model)
    longest = max((len(s) for s in sequences), default=0)
    if limit is not None and longest > limit:
        raise ValueError(f"{what}: a sequence has {longest} tokens but the model has {limit} positions")


@torch.inference_mode()
def score_tokens(model, sequences: list[list[int]], seq_index: np.ndarray, position: np.ndarray,
                 target: np.ndarray, batch_size: int, pad_id: int, want_logprob: bool = True,
                 want_rank: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each query q: log p and rank of token target[q] read at position[q] of sequence seq_index[q].

    The logits at position p predict token p + 1, so scoring token j of a sequence asks for
    position j - 1. Inputs are [Q] int arrays; returns (logprob [Q] float32, rank [Q] int64), NaN / -1
    for what was not wanted (each costs a pass over the vocabulary).
    """
    seq_index, position, target = (np.asarray(a, dtype=np.int64) for a in (seq_index, position, target))
    lengths = np.array([len(s) for s in sequences])
    if len(seq_index) and ((position < 0) | (position >= lengths[seq_index])).any():
        raise ValueError("a query position lies outside its sequence")
    device = next(model.parameters()).device
    body, head = model.base_model, model.get_output_embeddings()
    by_seq = np.argsort(seq_index, kind="stable")  # queries grouped by sequence
    starts = np.searchsorted(seq_index[by_seq], np.arange(len(sequences) + 1))  # [S + 1]
    logprob = np.full(len(seq_index), np.nan, dtype=np.float32)
    rank = np.full(len(seq_index), -1, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
    done, lp_parts, rank_parts = [], [], []  # per batch; results stay on the device until the end
    for b0 in range(0, len(order), batch_size):
        batch = order[b0:b0 + batch_size]
        width = int(lengths[batch].max())
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, L]
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, L]
        for row, s in enumerate(batch):
            ids[row, : lengths[s]] = torch.tensor(sequences[s])
            mask[row, : lengths[s]] = 1
        queries = np.concatenate([by_seq[starts[s]:starts[s + 1]] for s in batch])  # [Qb]
        if len(queries) == 0:
            continue
        rows = np.concatenate([np.full(starts[s + 1] - starts[s], row) for row, s in enumerate(batch)])  # [Qb]
        hidden = body(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state  # [B, L, D]
        picked = hidden[torch.as_tensor(rows, device=device),
                        torch.as_tensor(position[queries], device=device)]  # [Qb, D]
        logits = head(picked).float()  # [Qb, V]
        tgt = torch.as_tensor(target[queries], device=device)  # [Qb]
        done.append(queries)
        if want_logprob:
            lp_parts.append(target_logprob(logits, tgt))
        if want_rank:
            rank_parts.append(target_rank(logits, tgt))
    if done:
        queries = np.concatenate(done)
        if want_logprob:
            logprob[queries] = torch.cat(lp_parts).cpu().numpy()
        if want_rank:
            rank[queries] = torch.cat(rank_parts).cpu().numpy()
    return logprob, rank


def continuation_queries(prefix_lengths: list[int], sequences: list[list[int]]):
    """Queries scoring every token of each sequence from index prefix_length on.

    Returns (seq_index, position, target, owner) arrays [Q]; owner is the sequence a query sums into.
    A prefix length of 1 scores all tokens but the first (which has no context).
    """
    seq_index, position, target = [], [], []
    for s, (start, ids) in enumerate(zip(prefix_lengths, sequences)):
        if not 1 <= start < len(ids):
            raise ValueError(f"sequence {s}: nothing to score after a prefix of {start} of {len(ids)} tokens")
        for j in range(start, len(ids)):
            seq_index.append(s)
            position.append(j - 1)
            target.append(ids[j])
    seq_index = np.array(seq_index, dtype=np.int64)
    return seq_index, np.array(position, dtype=np.int64), np.array(target, dtype=np.int64), seq_index


def sequence_logprob(model, sequences: list[list[int]], prefix_lengths: list[int], batch_size: int,
                     pad_id: int) -> np.ndarray:
    """Sum of log p over each sequence's tokens after its prefix: log P(continuation | prefix). -> [S]"""
    seq_index, position, target, owner = continuation_queries(prefix_lengths, sequences)
    logprob, _ = score_tokens(model, sequences, seq_index, position, target, batch_size, pad_id, want_rank=False)
    return np.bincount(owner, weights=logprob.astype(np.float64), minlength=len(sequences))


@functools.lru_cache(maxsize=4)
def stop_token_ids(tok) -> torch.Tensor:
    """Ids of every token whose text contains a stop character, plus end of text. -> [T] int64

    Stopping on these ids is what transformers' `stop_strings` does for single characters, without
    its per-call setup over the whole vocabulary (seconds per batch on a CPU).
    """
    pieces = tok.batch_decode([[i] for i in range(len(tok))])
    ids = {i for i, text in enumerate(pieces) if any(c in text for c in STOP_CHARS)}
    return torch.tensor(sorted(ids | {tok.eos_token_id}), dtype=torch.long)


class StopAtTokens(StoppingCriteria):
    """Generation stopping criterion: a row is done once it emits one of `ids` (a [T] tensor)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.isin(input_ids[:, -1], self.ids.to(input_ids.device))  # [B] bool


@torch.inference_mode()
def greedy_continuations(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int,
                         budgets: list[int] | None = None) -> list[str]:
    """Greedy continuation text of each prompt, stopped at a period, newline or end of text.

    budgets: optional per-prompt token budgets (below max_new_tokens). A batch generates at most
    the largest budget of its prompts: for exact match that is the longest expected value's token
    count plus one stop token, past which no continuation can equal a value as the tokenizer
    writes it, and it spares generating max_new_tokens for answers that never stop.
    Prompts of similar length are batched together with left padding (generate derives position ids
    from the attention mask, so padding does not shift a prompt).
    """
    device = next(model.parameters()).device
    prompt_ids = encode(tok, prompts)
    check_lengths(model, [p + [0] * max_new_tokens for p in prompt_ids], "greedy generation")
    budgets = (np.minimum(max_new_tokens, budgets if budgets is not None else max_new_tokens)
               * np.ones(len(prompts), int))
    out = [""] * len(prompts)
    stopping = StoppingCriteriaList([StopAtTokens(stop_token_ids(tok))])
    order = np.lexsort((budgets, [len(p) for p in prompt_ids]))  # by prompt length, then budget
    for b0 in range(0, len(order), batch_size):
        batch = order[b0:b0 + batch_size]
        width = max(len(prompt_ids[i]) for i in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)  # [B, L]
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, L]
        for row, i in enumerate(batch):
            ids[row, width - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
            mask[row, width - len(prompt_ids[i]):] = 1
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                   max_new_tokens=int(budgets[batch].max()), pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id, stopping_criteria=stopping)  # [B, L + new]
        texts = tok.batch_decode(generated[:, width:], skip_special_tokens=True)  # new tokens only
        for i, text in zip(batch, texts):
            out[i] = text
    return out
