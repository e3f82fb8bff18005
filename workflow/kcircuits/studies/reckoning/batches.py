"""Token batches of the RECKONING task: facts for the inner loop, questions for the outer loss.

Every row starts with BOS (<|endoftext|> for the trained BPE and GPT-2: it starts every training
paragraph too) and is right-padded; labels are -100 where no loss is taken:
  facts     "fact i:" (masked, as the original) + " " + the fact's sentence
  answers   a prompt (masked) + " " + the answer: the question alone (theta'), or the context's
            facts joined before it (the in-context methods)
  recite    a fact's sentence with every token after BOS labelled (the multi-task objective)
A context's batches are built once (`context_batches`) and reused every epoch.
"""
from __future__ import annotations

import torch

IGNORE = -100


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def fact_rows(tok, facts: list[str]) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per fact: BOS, "fact i:" masked, then the sentence as the target."""
    rows = []
    for i, text in enumerate(facts):
        prefix, body = [tok.bos_token_id, *_ids(tok, f"fact {i}:")], _ids(tok, " " + text)
        rows.append((prefix + body, [IGNORE] * len(prefix) + body))
    return rows


def answer_rows(tok, prompts: list[str], answers: list[str]) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per prompt: BOS + prompt masked, " " + answer as the target."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        head, tail = [tok.bos_token_id, *_ids(tok, prompt)], _ids(tok, " " + answer)
        rows.append((head + tail, [IGNORE] * len(head) + tail))
    return rows


def recite_rows(tok, facts: list[str]) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per fact sentence, every token after BOS a target."""
    rows = []
    for text in facts:
        ids = [tok.bos_token_id, *_ids(tok, text)]
        rows.append((ids, [IGNORE, *ids[1:]]))
    return rows


def pad(rows: list[tuple[list[int], list[int]]], pad_id: int, device="cpu") -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels [B, T] (T: the longest row)."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, lab) in enumerate(rows):
        ids[i, :len(row)], labels[i, :len(lab)], mask[i, :len(row)] = torch.tensor(row), torch.tensor(lab), 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def in_context(facts: list[str], question: str) -> str:
    """The in-context methods' prompt: the facts in their order, then the question."""
    return " ".join([*facts, question])


def context_batches(tok, context: dict, questions: list[dict], random_facts: list[str] | None,
                    device="cpu") -> dict[str, dict[str, torch.Tensor]]:
    """One context's batches (context: a contexts-table row; questions: its questions-table rows):
    facts (inner loop), ask (question alone), ft_icr / no_facts / random_facts (in-context
    prompts), recite (the questions' relevant facts, whole) and recall (each relevant fact's
    value after its sentence up to the value: recitation exact match)."""
    facts, asked, answers = list(context["facts"]), [q["question"] for q in questions], [q["answer"] for q in questions]
    relevant = relevant_facts(questions)
    starts, values = context["fact_start"], context["fact_value"]
    out = {
        "facts": fact_rows(tok, facts),
        "ask": answer_rows(tok, asked, answers),
        "ft_icr": answer_rows(tok, [in_context(facts, q) for q in asked], answers),
        "no_facts": answer_rows(tok, asked, answers),
        "recite": recite_rows(tok, [facts[i] for i in relevant]),
        "recall": answer_rows(tok, [facts[i][:starts[i]].rstrip() for i in relevant], [values[i] for i in relevant]),
    }
    if random_facts is not None:
        out["random_facts"] = answer_rows(tok, [in_context(random_facts, q) for q in asked], answers)
    return {name: pad(rows, tok.pad_token_id, device) for name, rows in out.items()}


def relevant_facts(questions: list[dict]) -> list[int]:
    """Positions of the facts some question of a context needs, in order."""
    return sorted({int(i) for q in questions for i in q["relevant"]})


def longest_row(batches: dict[str, dict[str, torch.Tensor]]) -> int:
    return max(b["input_ids"].shape[1] for b in batches.values())


def answer_scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a teacher-forced answers batch: exact [B] bool (greedy decoding from the prompt
    reproduces every answer token: each token is the argmax given the ones before it) and
    first_rank [B] (1 + how many tokens score above the answer's first token).

    logits [B, T, V] of input_ids whose labels [B, T] mark the answer tokens.
    """
    pred, target = logits[:, :-1], labels[:, 1:]  # position t predicts token t + 1
    marked = target != IGNORE  # [B, T-1]
    exact = ((pred.argmax(-1) == target) | ~marked).all(dim=1)
    first = marked.int().argmax(dim=1)  # [B] position predicting the first answer token
    rows = torch.arange(len(labels), device=logits.device)
    at = pred[rows, first]  # [B, V]
    first_rank = 1 + (at > at.gather(1, target[rows, first][:, None])).sum(dim=1)
    return exact, first_rank
