"""Full-value metrics: the candidate trie and birthdays, the batched tree scoring against a naive sum of
log-probs per candidate, and, with an oracle model, agreement with the first-token metric where first
words are distinct and its over-credit where two values share a first token."""
from __future__ import annotations

import calendar
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from kcircuits import ATTRIBUTES
from kcircuits.data.entities import MONTHS
from kcircuits.evaluate import candidates, knowledge, metrics, scoring, values
from kcircuits.evaluate.trees import tree_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["Ada Lin", "Bo Quist", "Cy Rand", "Di Moss", "Ed Voss", "Flo Hart"]
CITIES = ["Paris", "Oslo", "Lima", "Rome", "San Diego", "San Jose", "New Haven"]
PROMPT = "{} lives in"
TASK = "{name} lives in"  # a circuit task template


@pytest.fixture(scope="module")
def tok():
    from kcircuits.tokenizer import train_bpe

    texts = [f"{n} lives in {c}. {n} works for Acme Corp. {n} was born on March 3, 1990." for n in NAMES
             for c in CITIES] * 3
    return train_bpe(texts, 400, 2)


def ids(tok, text: str) -> list[int]:
    return scoring.encode(tok, [text])[0]


# --- candidates -------------------------------------------------------------------------------------

def test_trie_shares_prefixes_and_marks_values_that_continue():
    vals = ("a", "ab", "abc", "b", "bd")
    tokens = ((1,), (1, 2), (1, 2, 3), (4,), (4, 5))
    trie = candidates.build_trie(vals, tokens)
    prefixes = [(1,), (4,), (1, 2), (4, 5), (1, 2, 3)]  # by length, then tokens
    assert trie.token.tolist() == [p[-1] for p in prefixes]
    assert trie.parent.tolist() == [-1, -1, 0, 1, 2] and trie.depth.tolist() == [0, 0, 1, 1, 2]
    assert trie.leaf.tolist() == [0, 2, 4, 1, 3]  # a value that another continues is a node with children
    assert trie.inner.tolist() == [True, True, True, False, False]


def _entities(rows: list[dict]) -> pd.DataFrame:
    """An entity table with every value column; rows give what they need."""
    columns = ("birth_day", "birth_month", "birth_year", *ATTRIBUTES)
    base = {"type": "new", "freq_group": "low", **{c: None for a in columns for c in (a, f"orig_{a}")}}
    frame = pd.DataFrame([{**base, "entity_id": i, "name": f"E{i}", **r} for i, r in enumerate(rows)])
    for a in ATTRIBUTES[1:]:
        frame[a] = frame[a].fillna("Paris")
    return frame


def _date(day, month, year, day_first=False):
    return f"{day} {MONTHS[month - 1]}, {year}" if day_first else f"{MONTHS[month - 1]} {day}, {year}"


def _fields(text: str, day_first: bool) -> tuple[int, int, int]:
    words = text.replace(",", "").split()
    day, month = (words[0], words[1]) if day_first else (words[1], words[0])
    return int(day), MONTHS.index(month) + 1, int(words[2])


def test_birthday_candidates_are_their_own_dates_and_dates_one_field_away(tok):
    born = {"birth_day": 29, "birth_month": 2, "birth_year": 1960, "birthday": _date(29, 2, 1960)}
    revised = {"type": "revised", "birth_day": 31, "birth_month": 1, "birth_year": 1970, "birthday": _date(31, 1, 1970),
               "orig_birth_day": 5, "orig_birth_month": 7, "orig_birth_year": 1950, "orig_birthday": _date(5, 7, 1950)}
    day_first = {"birth_day": 7, "birth_month": 3, "birth_year": 1955, "birthday": _date(7, 3, 1955, day_first=True)}
    entities = _entities([born, revised, day_first])
    sets = candidates.CandidateSets(tok, entities, 12, seed=0)
    for entity, own, first in ((0, [born["birthday"]], False),
                               (1, [revised["birthday"], revised["orig_birthday"]], False),
                               (2, [day_first["birthday"]], True)):
        dates = sets.birthdays(entity)
        assert len(dates) == len(set(dates)) == 12 and set(own) <= set(dates)
        owned = [_fields(o, first) for o in own]
        for text in set(dates) - set(own):
            d, m, y = _fields(text, first)
            assert 1950 <= y <= 1970 and d <= calendar.monthrange(y, m)[1]  # a real date of the world's years
            assert any(sum(a != b for a, b in zip((d, m, y), o)) == 1 for o in owned)  # one field off an own date
    # the draw belongs to the entity: the same whichever entities are asked, and in whatever order
    assert candidates.CandidateSets(tok, entities, 12, seed=0).birthdays(2) == sets.birthdays(2)
    assert candidates.CandidateSets(tok, entities, 12, seed=1).birthdays(0) != sets.birthdays(0)
    assert sets.values(0, "city") == ("Paris",) and sets.sizes()["birthday"] == 12


def test_full_value_columns_and_chance():
    cols = metrics.full_value_columns("query", np.array([0, 3, 9, 10, -1]), 10)
    np.testing.assert_array_equal(cols["query_full_top1"], [1, 0, 0, 0, np.nan])
    np.testing.assert_array_equal(cols["query_full_hit@10"], [1, 1, 1, 0, np.nan])
    np.testing.assert_allclose(cols["query_full_mrr@10"], [1, 1 / 4, 1 / 10, 0, np.nan])
    chance = metrics.full_value_chance("query", 20, 10)
    assert chance["query_full_top1"] == 1 / 20 and chance["query_full_hit@10"] == 0.5
    assert chance["query_full_mrr@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 20)
    # a model that ranks at random scores chance on average
    rng = np.random.default_rng(0)
    ranks = np.array([rng.permutation(20).tolist().index(0) for _ in range(20_000)])
    got = metrics.full_value_columns("query", ranks, 10)
    for name, value in chance.items():
        assert got[name].mean() == pytest.approx(value, abs=0.01)


def test_tree_inputs_let_a_branch_see_only_its_ancestors():
    # row 0: chain 0-1-2, a branch 3 off token 1 and 4 under it; row 1: a plain chain of 3, padding after it
    par = np.array([[-1, 0, 1, 1, 3], [-1, 0, 1, -1, -1]])
    seen, position = tree_inputs(par)
    assert seen[0, 3].nonzero().flatten().tolist() == [0, 1, 3]
    assert seen[0, 4].nonzero().flatten().tolist() == [0, 1, 3, 4]
    assert seen[0, 2].nonzero().flatten().tolist() == [0, 1, 2]  # the chain never sees the branch
    assert position.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 0, 0]]
    assert seen[1, 4].nonzero().flatten().tolist() == [4]  # padding sees only itself


def test_read_positions_shares_logits_and_chunks_alike():
    from kcircuits.evaluate.trees import read_positions

    torch.manual_seed(0)
    head = torch.nn.Linear(4, 9, bias=False)
    model = SimpleNamespace(get_output_embeddings=lambda: head)
    hidden = torch.randn(3, 5, 4)  # [B, L, D]
    rows, cols = np.array([0, 0, 2, 1, 0, 2]), np.array([1, 1, 4, 0, 3, 4])
    target, ranked = np.array([3, 5, 0, 8, 2, 0]), np.array([True, False, False, True, False, True])
    lp, rank = read_positions(model, hidden, 0, rows, cols, target, ranked)
    logits = head(hidden[rows, cols]).detach()  # [Q, V]
    np.testing.assert_allclose(lp[~ranked], torch.log_softmax(logits, 1)[~ranked, target[~ranked]], atol=1e-6)
    assert rank[ranked].tolist() == [int((lg > lg[t]).sum()) for lg, t in zip(logits[ranked], target[ranked])]
    assert np.isnan(lp[ranked]).all() and (rank[~ranked] == -1).all()
    lp1, rank1 = read_positions(model, hidden, 0, rows, cols, target, ranked, chunk=1)
    np.testing.assert_allclose(lp1, lp, atol=1e-6)
    np.testing.assert_array_equal(rank1, rank)


# --- batched scores against a naive sum ---------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2, n_positions=128)
    return GPT2LMHeadModel(config).eval()


def _naive(model, tok, chain: list[int], anchor: int, cands: candidates.Candidates) -> np.ndarray:
    """log P(' value' | chain[:anchor]) of each candidate, one sequence each. -> [C]"""
    seqs = [chain[:anchor] + list(t) for t in cands.tokens]
    return scoring.sequence_logprob(model, seqs, [anchor] * len(seqs), 4, tok.pad_token_id)


def test_batched_full_value_scores_equal_a_naive_sum_per_candidate(gpt2, tok):
    cities = candidates.build_trie(tuple(CITIES), tuple(candidates.value_tokens(tok, CITIES)))
    dates = [_date(d, m, y) for d, m, y in ((3, 3, 1990), (13, 3, 1990), (3, 5, 1990), (3, 3, 1991), (30, 5, 1989))]
    births = candidates.build_trie(tuple(dates), tuple(candidates.value_tokens(tok, dates)))
    assert len({t[0] for t in cities.tokens}) < len(CITIES)  # two Sans: a shared first token
    paragraph = ids(tok, "Ada Lin lives in Oslo. Ada Lin was born on March 3, 1990.")
    chains = [ids(tok, PROMPT.format(n)) for n in NAMES] + [paragraph]
    city_at = len(ids(tok, "Ada Lin lives in"))
    birth_at = len(ids(tok, "Ada Lin lives in Oslo. Ada Lin was born on"))
    rows = np.array([0, 0, 1, 2, 3, 4, 5, 6, 6])  # two targets at the first prompt; two positions in the paragraph
    anchor = np.array([len(chains[r]) for r in rows[:-2]] + [city_at, birth_at])
    sets = [cities] * 8 + [births]
    truth = np.array([0, 4, 5, 1, 2, 6, 3, 1, 0])
    first = np.array([c.tokens[t][0] for c, t in zip(sets, truth)])
    items = values.ValueItems(rows, anchor, first, sets, truth)
    scores = values.candidate_scores(gpt2, chains, items, 3, tok.pad_token_id)
    exact = np.empty(len(rows), dtype=int)
    for i, (r, a, c) in enumerate(zip(rows, anchor, sets)):
        naive = _naive(gpt2, tok, chains[r], a, c)
        np.testing.assert_allclose(scores[i], naive, rtol=0, atol=1e-4)
        exact[i] = (naive > naive[truth[i]]).sum()
    first_rank, rank = values.rank_values(gpt2, chains, items, 3, tok.pad_token_id)
    assert rank.tolist() == exact.tolist()  # pruning only skips what cannot outrank the truth
    _, capped = values.rank_values(gpt2, chains, items, 3, tok.pad_token_id, stop_at=2)
    assert capped.tolist() == np.minimum(exact, 2).tolist()
    _, plain = scoring.score_tokens(gpt2, chains, rows, anchor - 1, first, 3, tok.pad_token_id, want_logprob=False)
    assert first_rank.tolist() == plain.tolist()  # the first-token rank is the plain pass's
    alone = values.ValueItems(rows, anchor, first, [None] * len(rows), np.zeros(len(rows), dtype=int))
    assert values.rank_values(gpt2, chains, alone, 3, tok.pad_token_id)[0].tolist() == plain.tolist()  # no candidates
    assert values.rank_values(gpt2, chains, items, 9, tok.pad_token_id)[1].tolist() == exact.tolist()  # any batching


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_tree_scoring_holds_for_rotary_families(tok, family):
    """Branches sit at their depth through position ids, which rotary models read too."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=128)
    model = (LlamaForCausalLM(LlamaConfig(**sizes, num_key_value_heads=2)) if family == "llama"
             else GPTNeoXForCausalLM(GPTNeoXConfig(**sizes))).eval()
    cities = candidates.build_trie(tuple(CITIES), tuple(candidates.value_tokens(tok, CITIES)))
    chains = [ids(tok, PROMPT.format(n)) for n in NAMES[:3]]
    items = values.ValueItems(np.arange(3), np.array([len(c) for c in chains]), np.zeros(3, dtype=int), [cities] * 3,
                              np.array([0, 4, 6]))
    for i, got in enumerate(values.candidate_scores(model, chains, items, 2, tok.pad_token_id)):
        np.testing.assert_allclose(got, _naive(model, tok, chains[i], len(chains[i]), cities), rtol=0, atol=1e-4)


# --- an oracle: first-token and full-value metrics side by side ----------------------------------------

class _Out(dict):
    __getattr__ = dict.__getitem__


class _Cache:
    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def reorder_cache(self, index: torch.Tensor) -> None:
        self.ids = self.ids[index]


class _OracleBody(torch.nn.Module):
    def __init__(self, oracle):
        super().__init__()
        self.oracle = [oracle]  # not a submodule

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False):
        past = cache.ids if cache is not None else input_ids[:, :0]
        every = torch.cat([past, input_ids], dim=1)  # [B, P + L]
        if attention_mask.dim() == 4:  # a token tree: each token sees its ancestors
            seen = attention_mask[:, 0] == 0  # [B, L, P + L]
        else:
            width = input_ids.shape[1]
            seen = torch.tril(torch.ones(width, width, dtype=torch.bool)) & attention_mask.bool()[:, None]
        oracle = self.oracle[0]
        hidden = torch.zeros(*input_ids.shape, oracle.vocab_size)  # [B, L, V]: already the logits
        for b in range(len(input_ids)):
            for i in range(input_ids.shape[1]):
                nxt = oracle.memory.get(tuple(every[b][seen[b, i]].tolist()))
                if nxt is not None:
                    hidden[b, i, nxt] = oracle.confidence
        return _Out(last_hidden_state=hidden, cache=_Cache(every))


class TreeOracle(torch.nn.Module):
    """After a token prefix it has memorised, logit `confidence` on the memorised next token, 0 on every
    other; reads token trees (a 4D mask: a token's prefix is its ancestors) and a key/value cache."""

    def __init__(self, tok, texts: list[str], confidence: float = 50.0):
        super().__init__()
        self.vocab_size, self.confidence, self.memory = len(tok), confidence, {}
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(max_position_embeddings=512)
        self.base_model = _OracleBody(self)
        for seq in scoring.encode(tok, texts):
            for p in range(len(seq) - 1):
                self.memory[tuple(seq[: p + 1])] = seq[p + 1]

    def get_output_embeddings(self):
        return torch.nn.Identity()


def _world(tok, cities: list[str]):
    """One new entity per name, living in cities[i]; the candidate sets of its world."""
    born = {"birthday": _date(3, 3, 1990), "birth_day": 3, "birth_month": 3, "birth_year": 1990}
    entities = _entities([{"city": c, **born} for c in cities])
    probes = entities[["entity_id", "type", "freq_group"]].assign(
        attribute="city", prompt=[PROMPT.format(n) for n in NAMES[: len(cities)]], answer=cities, orig_answer=None)
    return probes, candidates.CandidateSets(tok, entities, 5, seed=0)


def _query(model, tok, probes, sets) -> pd.DataFrame:
    return knowledge.query_items(model, tok, probes, np.zeros(len(probes), bool), "query", 10, 4, 4, candidates=sets)


def test_first_token_and_full_value_top1_agree_where_first_words_are_distinct(tok):
    cities = ["Paris", "Oslo", "Lima", "Rome", "New Haven", "San Jose"]  # every first word its own
    probes, sets = _world(tok, cities)
    believed = {0: "Oslo", 3: "New Haven", 5: "Lima"}  # wrong beliefs; the others are known
    texts = [f"{p} {believed.get(i, c)}" for i, (p, c) in enumerate(zip(probes["prompt"], cities))]
    items = _query(TreeOracle(tok, texts), tok, probes, sets)
    assert items["query_top1"].tolist() == [float(i not in believed) for i in range(len(cities))]
    assert items["query_full_top1"].tolist() == items["query_top1"].tolist()
    assert (items["query_full_hit@10"] == 1).all()  # 6 candidates: always among the 10 best


def test_first_token_over_credits_a_shared_first_word_and_full_value_does_not(tok):
    cities = ["San Jose", "Oslo", "San Diego"]
    probes, sets = _world(tok, cities)
    san_jose, san_diego = (sets.get(0, "city").tokens[sets.get(0, "city").index(c)] for c in ("San Jose", "San Diego"))
    assert san_jose[0] == san_diego[0] and san_jose != san_diego  # the construction: one first token, two values
    # The oracle believes San Diego for entity 0: all its mass on ' San', then on ' Diego'.
    texts = [f"{probes['prompt'][0]} San Diego", f"{probes['prompt'][1]} Oslo", f"{probes['prompt'][2]} San Diego"]
    items = _query(TreeOracle(tok, texts), tok, probes, sets)
    assert items["query_top1"].tolist() == [1.0, 1.0, 1.0]  # entity 0 credited: its first token is top-1
    assert items["query_full_top1"].tolist() == [0.0, 1.0, 1.0]  # San Diego outranks the true San Jose
    assert items["query_full_mrr@10"].tolist() == [0.5, 1.0, 1.0]


def test_paragraph_items_rank_values_in_place(tok):
    cities = ["San Jose", "Oslo", "San Diego"]
    lead = {"city": "lives in", "major": "studied", "university": "attended", "company": "works for"}
    entities = _entities([{**{a: c for a in lead}, "birthday": _date(3, 3, 1990), "birth_day": 3, "birth_month": 3,
                           "birth_year": 1990} for c in cities])
    paragraphs = []
    for i, c in enumerate(cities):
        text = f"{NAMES[i]} was born on March 3, 1990." + "".join(f" {NAMES[i]} {w} {c}." for w in lead.values())
        spans = {"birthday": [text.index("March"), text.index("March") + len("March 3, 1990")]}
        for a, w in lead.items():
            start = text.index(f"{w} {c}") + len(w) + 1
            spans[a] = [start, start + len(c)]
        paragraphs.append({"entity_id": i, "text": text, "spans": spans})
    sets = candidates.CandidateSets(tok, entities, 5, seed=0)
    believed = [p["text"].replace("San Jose", "San Diego") for p in paragraphs]  # entity 0 believes San Diego
    items = knowledge.paragraph_items(TreeOracle(tok, believed), tok, paragraphs, entities, "bio", "current", 2,
                                      False, sets, 10)
    city = items[items["attribute"] == "city"].set_index("entity_id")
    assert city["bio_first_token"].tolist() == [1.0, 1.0, 1.0]  # ' San' is top-1 for San Jose too
    assert city["bio_full_top1"].tolist() == [0.0, 1.0, 1.0]
    birthday = items[items["attribute"] == "birthday"]
    assert (birthday["bio_full_top1"] == 1).all() and (birthday["bio_first_token"] == 1).all()
    assert len(sets.birthdays(0)) == 5


# --- circuit pairs keep different first label tokens ----------------------------------------------------

def test_circuit_pairs_pass_over_and_count_shared_first_label_tokens(tok):
    from kcircuits.data.pairs import pair_cell

    def cell(cities):  # one name for all: every prompt has the same length
        return pd.DataFrame({"entity_id": range(len(cities)), "name": "Ada Lin", "city": cities})

    rows, counts = pair_cell(cell(["San Jose", "San Diego"]), "city", TASK, tok, np.random.default_rng(0))
    assert rows == [] and counts["no_partner_with_other_label_token"] == 2  # their only partners share ' San'
    assert counts["partners_sharing_first_label_token"] == 2 and counts["values_sharing_first_label_token"] == 2
    rows, counts = pair_cell(cell(["San Jose", "San Diego", "Oslo", "Oslo"]), "city", TASK, tok,
                             np.random.default_rng(0))
    partner = {r["clean_label"]: r["corrupted_label"] for r in rows}
    assert partner["San Jose"] == partner["San Diego"] == "Oslo" and len(rows) == 4
    assert all(r["clean_label_token"] != r["corrupted_label_token"] for r in rows)
    assert counts["partners_sharing_first_label_token"] == 2 and counts["paired"] == 4


# --- end to end -------------------------------------------------------------------------------------

SHARED_CITIES = ["San Antonio", "San Diego", "San Jose", "San Francisco", "Fort Worth", "Fort Wayne", "New Haven"]
SHARED_UNIVERSITIES = [f"University of {s}" for s in ("Dayton", "Utah", "Oregon", "Kansas", "Iowa")]


@pytest.mark.slow
def test_a_world_whose_values_share_first_words_runs_through_evaluation(tmp_path):
    """The default pools plus cities and universities that share first words (as the original's), with
    resources.shared_first_words: the data stages, base training and the first checkpoint's
    evaluation run; circuit pairs keep distinct label tokens and count what sharing costs; the
    full-value metrics are there with their chance levels."""
    from helpers import REPO, TINY, snakemake

    pools = tmp_path / "pools"
    pools.mkdir()
    for src in (REPO / "resources" / "pools").glob("*.txt"):
        (pools / src.name).write_text(src.read_text())
    for name, extra in (("cities.txt", SHARED_CITIES), ("universities.txt", SHARED_UNIVERSITIES)):
        kept = [v for v in (pools / name).read_text().splitlines()[:40] if v not in extra]
        (pools / name).write_text("\n".join(kept + extra) + "\n")
    shared = tmp_path / "shared.yaml"
    shared.write_text(f"resources: {{pools: {pools}, shared_first_words: true}}\n")
    snakemake(tmp_path, "results/tiny/seed-0/eval/epoch-000.parquet", "results/tiny/data/circuit_pairs.parquet",
              configfiles=(TINY, shared))
    data = tmp_path / "results" / "tiny" / "data"
    entities = pd.read_parquet(data / "entities.parquet")
    cities = set(entities["city"].dropna()) | set(entities["orig_city"].dropna())
    assert len(cities & set(SHARED_CITIES)) >= 3  # the world has values that share a first word

    pairs = pd.read_parquet(data / "circuit_pairs.parquet")
    assert len(pairs) and (pairs["clean_label_token"] != pairs["corrupted_label_token"]).all()
    cells = json.loads((data / "circuit_pairs_report.json").read_text())["cells"]
    city_cells = [c for key, c in cells.items() if key.startswith("city")]
    assert sum(c["values_sharing_first_label_token"] for c in city_cells) >= 2

    ev = pd.read_parquet(tmp_path / "results" / "tiny" / "seed-0" / "eval" / "epoch-000.parquet")
    chance = ev[ev["metric"] == "query_full_top1"].groupby("attribute")["chance"].first()
    assert chance["city"] == pytest.approx(1 / len(cities))
    for prefix in ("query", "paraphrase", "bio", "base"):
        assert {f"{prefix}_full_top1", f"{prefix}_full_hit@10", f"{prefix}_full_mrr@10"} <= set(ev["metric"])
    wide = ev.pivot_table(index=["target", "type", "freq_group", "attribute"], columns="metric", values="value")
    full = wide[["query_full_top1", "query_full_mrr@10", "query_full_hit@10"]].dropna()  # cells with queries
    assert len(full) and (full["query_full_hit@10"] >= full["query_full_mrr@10"]).all()
    assert (full["query_full_mrr@10"] >= full["query_full_top1"]).all()
