"""Document memory (kcircuits.studies.memory): the sweep's measure tables (one per point and seed,
concatenated) summarised per point (documents, model, hook_layer, alpha, allocation), and the finding.

- recall:       top1, hit_at_k (facts), exact continuation and token_accuracy (paragraphs), and
                top1_difference: top1 minus the alpha = 0 point of the same (documents, model,
                hook_layer, allocation), paired per fact and seed (NaN at alpha 0);
- interference: recall (top-1 of a document: the mean over its facts) of documents that share slots
                (overlap > 0) and of exclusive ones (overlap == 0), gap = exclusive - shared (> 0:
                sharing hurts) and gap_change against alpha = 0 (same documents and labels, paired per
                document). NaN where a group is empty: partitioned has no shared documents, a random
                allocation with many slots per document may have no exclusive ones;
- locality:     knowledge neurons (the sampled facts') in the hook layer inside the document's slots
                (neurons_inside = sum n_inside / sum n_at_layer, against `chance` = slots / MLP width)
                and in the hook layer at all (neurons_at_layer, against layer_chance = 1 / layers);
                slot_share: the documents' hook-layer activation energy inside their slots;
- layers:       per point and edge budget, the hook layer's edge_share (in-circuit edges leaving it
                over the circuit's), ratio (over the graph's edges leaving it), means over circuit
                cells, and neurons_at_layer: at alpha = 0 (one plain model) the layer sweep, which
                hook layer holds the documents' knowledge;
- generation:   the generation probe's success (any of k samples names the value) and rate.

Every x has x_lo / x_hi: a 95% percentile bootstrap, rows (facts, paragraphs, documents, circuit
cells, probes) resampled within each training seed (kcircuits.stats.stratified_means); each block draws
from a generator seeded by (seed, crc32 of its name): the same tables give the same numbers, and
alpha = 0's recall the same interval at every hook layer and allocation (_rng).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...stats import json_number, stage_rng, stratified_means
from ...vocabulary import budget_value

POINT = ["documents", "model", "hook_layer", "alpha", "allocation"]
BASE = ["documents", "model", "hook_layer", "allocation"]  # a point without alpha: its alpha = 0 counterpart
FACT = ["seed", "doc", "entity_id", "attribute"]
DOC = ["seed", "doc"]
SORT = {"facts": FACT, "paragraphs": ["seed", "doc", "paragraph"], "documents": DOC,
        "circuits": ["seed", "budget", "layer", "task", "type", "freq_group"],
        "generations": ["seed", "doc", "entity_id", "attribute", "prompt"]}
RECALL_VERDICTS = ("beats", "worse", "no difference")
INTERFERENCE_VERDICTS = ("reduced", "increased", "no difference", "cannot be tested")
UNTESTED = "cannot be tested"
MIN_GROUP = 5  # fewer shared or exclusive documents (seeds pooled): the interference change is not tested
MODEL_ONLY = ("recall", "continuation", "generation")  # measures of the model alone, whatever the allocation
MEMORY_FINDING = ("training with the inductive loss (alpha > 0), which keeps each document in its allocated "
                  "slots, recalls the documents better than plain training (alpha = 0), or lessens the "
                  "interference between documents that share slots")


def _iv(*names: str) -> list[str]:
    """Each name with its interval's columns name_lo, name_hi."""
    return [c for n in names for c in (n, f"{n}_lo", f"{n}_hi")]


RECALL_COLUMNS = [*POINT, *_iv("top1", "hit_at_k"), "n_facts", *_iv("exact", "token_accuracy"), "n_paragraphs",
                  *_iv("top1_difference"), "n_paired", "n_seeds"]
INTERFERENCE_COLUMNS = [*POINT, *_iv("recall_shared", "recall_exclusive"), "n_shared", "n_exclusive",
                        *_iv("gap", "gap_change", "cost"), "n_cost", "n_seeds"]
LOCALITY_COLUMNS = [*POINT, *_iv("neurons_inside", "neurons_at_layer"), "n_neuron_facts", "n_knowledge_neurons",
                    "chance", "layer_chance", *_iv("slot_share"), "n_documents", "n_seeds"]
LAYERS_COLUMNS = [*POINT, "budget", *_iv("edge_share", "ratio"), "n_cells", "n_seeds", *_iv("neurons_at_layer"),
                  "layer_chance"]
GENERATION_COLUMNS = [*POINT, *_iv("success", "rate"), "n_facts", "n_seeds"]


def _rng(seed: int, name: str, key: tuple) -> np.random.Generator:
    """A block's generator: (seed, crc32 of "memory/name/key..."), key: POINT values (and more). At
    alpha = 0 (one plain model) the key leaves out the allocation, and for the model's own measures
    (MODEL_ONLY) the hook layer too: the same numbers get the same interval wherever they appear."""
    documents, model, layer, alpha, _ = key[:5]
    if alpha == 0:
        key = (documents, model, *([] if name in MODEL_ONLY else [layer]), "plain", *key[5:])
    return stage_rng(seed, "/".join(map(str, ("memory", name, *key))))


def _by_point(frame: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    return dict(tuple(frame.groupby(POINT, sort=True)))


def _boot(part: pd.DataFrame, columns: list[str], n_bootstrap: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Means of `columns` [k] and their resampled means [B, k] (rows within seeds, columns together)."""
    values = part[columns].to_numpy(dtype=float)
    if not len(values):
        return np.full(len(columns), np.nan), np.full((n_bootstrap, len(columns)), np.nan)
    return values.mean(axis=0), stratified_means(values, part["seed"].to_numpy(), n_bootstrap, rng)


def _stat(name: str, value, boot) -> dict:
    """{name, name_lo, name_hi}: the value and the 2.5 / 97.5 percentiles of its finite resamples."""
    boot = np.asarray(boot, dtype=float)
    finite = boot[np.isfinite(boot)]
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) and np.isfinite(value) else (np.nan, np.nan)
    return {name: float(value), f"{name}_lo": float(low), f"{name}_hi": float(high)}


def _means(part: pd.DataFrame, columns: list[str], n_bootstrap: int, rng, names=None) -> dict:
    """_stat of each column's mean (named `names`, default the columns), columns resampled together."""
    mean, boot = _boot(part, columns, n_bootstrap, rng)
    return {k: v for j, name in enumerate(names or columns) for k, v in _stat(name, mean[j], boot[:, j]).items()}


def _seeds(*parts: pd.DataFrame) -> int:
    return int(pd.concat([p["seed"] for p in parts]).nunique())


def _vs_partitioned(facts: pd.DataFrame) -> pd.DataFrame:
    """The facts of every allocation but partitioned beside the same fact under partitioned at the same
    documents, hook layer and alpha: cost = partitioned's top1 - this point's (what sharing slots
    loses against disjoint ones; exactly 0 at alpha 0, one plain model)."""
    keys = ["documents", "model", "hook_layer", "alpha", *FACT]
    exclusive = facts[facts["allocation"] == "partitioned"][[*keys, "top1"]].rename(columns={"top1": "exclusive"})
    paired = facts[facts["allocation"] != "partitioned"].merge(exclusive, on=keys)
    return paired.assign(cost=paired["exclusive"] - paired["top1"])


def _vs_plain(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """The alpha > 0 rows of `frame` (all their columns) beside the alpha = 0 row of the same BASE and
    `keys`: plus plain (its value) and difference (value - plain)."""
    plain = frame[frame["alpha"] == 0][[*BASE, *keys, value]].rename(columns={value: "plain"})
    paired = frame[frame["alpha"] > 0].merge(plain, on=[*BASE, *keys])
    return paired.assign(difference=paired[value] - paired["plain"])


def _recall(facts, paragraphs, n_bootstrap: int, seed: int) -> pd.DataFrame:
    by_fact, by_paragraph = _by_point(facts), _by_point(paragraphs)
    by_pair = _by_point(_vs_plain(facts, FACT, "top1"))
    rows = []
    for point in sorted(set(by_fact) | set(by_paragraph)):
        f, p = by_fact.get(point, facts.iloc[:0]), by_paragraph.get(point, paragraphs.iloc[:0])
        d = by_pair.get(point, pd.DataFrame(columns=["seed", "difference"]))
        rows.append({**dict(zip(POINT, point)),
                     **_means(f, ["top1", "hit_at_k"], n_bootstrap, _rng(seed, "recall", point)),
                     "n_facts": len(f),
                     **_means(p, ["exact", "token_accuracy"], n_bootstrap, _rng(seed, "continuation", point)),
                     "n_paragraphs": len(p),
                     **_means(d, ["difference"], n_bootstrap, _rng(seed, "recall_difference", point),
                              ["top1_difference"]),
                     "n_paired": len(d), "n_seeds": _seeds(f, p)})
    return pd.DataFrame(rows, columns=RECALL_COLUMNS)


def _groups(part: pd.DataFrame, column: str, n_bootstrap: int, rng) -> dict:
    """Shared (overlap > 0) and exclusive documents: (mean, [B] resampled means, rows) of `column`."""
    out = {}
    for name, mask in (("shared", part["overlap"] > 0), ("exclusive", part["overlap"] == 0)):
        mean, boot = _boot(part[mask], [column], n_bootstrap, rng)
        out[name] = (mean[0], boot[:, 0], int(mask.sum()))
    return out


def _interference(facts, documents, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per point: documents' top1 (mean over their facts; documents without facts left out) by group."""
    docs = facts.groupby([*POINT, *DOC], sort=True)["top1"].mean().reset_index()
    docs = docs.merge(documents[[*POINT, *DOC, "overlap"]], on=[*POINT, *DOC])
    by_pair = _by_point(_vs_plain(docs, DOC, "top1"))  # the point's own labels
    by_cost = _by_point(_vs_partitioned(facts))
    rows = []
    for point, part in _by_point(docs).items():
        cost = by_cost.get(point, pd.DataFrame(columns=["seed", "cost"]))
        g = _groups(part, "top1", n_bootstrap, _rng(seed, "interference", point))
        pair = by_pair.get(point, part.iloc[:0].assign(difference=np.nan))
        c = _groups(pair, "difference", n_bootstrap, _rng(seed, "interference_change", point))
        (sm, sb, ns), (em, eb, ne) = g["shared"], g["exclusive"]
        rows.append({**dict(zip(POINT, point)), **_stat("recall_shared", sm, sb), **_stat("recall_exclusive", em, eb),
                     "n_shared": ns, "n_exclusive": ne, **_stat("gap", em - sm, eb - sb),
                     **_stat("gap_change", c["exclusive"][0] - c["shared"][0], c["exclusive"][1] - c["shared"][1]),
                     **_means(cost, ["cost"], n_bootstrap, _rng(seed, "sharing_cost", point)),
                     "n_cost": len(cost), "n_seeds": _seeds(part)})
    return pd.DataFrame(rows, columns=INTERFERENCE_COLUMNS)


def _neuron_shares(part: pd.DataFrame, n_bootstrap: int, rng) -> dict:
    """neurons_inside and neurons_at_layer (ratios of sums) over the sampled facts, with intervals."""
    sampled = part.dropna(subset=["n_at_layer"])
    mean, boot = _boot(sampled, ["n_inside", "n_at_layer", "n_neurons"], n_bootstrap, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside, at_layer = mean[0] / mean[1], mean[1] / mean[2]
        inside_boot, at_layer_boot = boot[:, 0] / boot[:, 1], boot[:, 1] / boot[:, 2]
    return {**_stat("neurons_inside", inside, inside_boot), **_stat("neurons_at_layer", at_layer, at_layer_boot),
            "n_neuron_facts": len(sampled), "n_knowledge_neurons": int(sampled["n_neurons"].sum())}


def _locality(facts, documents, n_layers: dict, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per point; n_layers: each model's number of layers (chance of the hook layer among them)."""
    by_fact, by_doc = _by_point(facts), _by_point(documents)
    rows = []
    for point in sorted(set(by_fact) | set(by_doc)):
        f, d = by_fact.get(point, facts.iloc[:0]), by_doc.get(point, documents.iloc[:0])
        shares = d.dropna(subset=["slot_share"])
        rows.append({**dict(zip(POINT, point)),
                     **_neuron_shares(f, n_bootstrap, _rng(seed, "neurons", point)),
                     "chance": float(d["chance"].mean()) if len(d) else np.nan,
                     "layer_chance": 1 / n_layers[point[1]] if point[1] in n_layers else np.nan,
                     **_means(shares, ["slot_share"], n_bootstrap, _rng(seed, "slot_share", point)),
                     "n_documents": len(shares), "n_seeds": _seeds(f, d)})
    return pd.DataFrame(rows, columns=LOCALITY_COLUMNS)


def _layers(circuits, locality: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per point and budget: the hook layer's rows of the circuits (a row per seed and cell)."""
    rows = [{**dict(zip([*POINT, "budget"], key)),
             **_means(part, ["edge_share", "ratio"], n_bootstrap, _rng(seed, "layers", key)),
             "n_cells": len(part), "n_seeds": _seeds(part)}
            for key, part in circuits[circuits["layer"] == circuits["hook_layer"]].groupby([*POINT, "budget"])]
    table = pd.DataFrame(rows, columns=[*POINT, "budget", *_iv("edge_share", "ratio"), "n_cells", "n_seeds"])
    neurons = locality[[*POINT, *_iv("neurons_at_layer"), "layer_chance"]]
    table = table.merge(neurons, on=POINT, how="left").astype({"budget": str})
    table = table.assign(_order=table["budget"].map(budget_value).astype(float))
    return table.sort_values([*POINT, "_order"], kind="stable")[LAYERS_COLUMNS].reset_index(drop=True)


def _generation(generations, n_bootstrap: int, seed: int) -> pd.DataFrame:
    rows = [{**dict(zip(POINT, point)),
             **_means(part, ["success", "rate"], n_bootstrap, _rng(seed, "generation", point)),
             "n_facts": len(part), "n_seeds": _seeds(part)} for point, part in _by_point(generations).items()]
    return pd.DataFrame(rows, columns=GENERATION_COLUMNS)


def memory_tables(inputs: dict[str, pd.DataFrame], n_bootstrap: int, seed: int) -> dict[str, pd.DataFrame]:
    """The summary tables (module docstring) from the measure tables `inputs` (memory.stage.MEASURES,
    each concatenated over points and seeds), keyed as memory.stage.SUMMARIES. Rows in POINT order
    (allocations alphabetical), layers' budgets by value."""
    t = {name: frame.sort_values([c for c in SORT[name] if c in frame.columns], kind="stable")
         for name, frame in inputs.items()}
    circuits = t["circuits"]
    n_layers = {m: int(part["layer"].max()) + 1 for m, part in circuits.groupby("model")}  # layer -1: input
    locality = _locality(t["facts"], t["documents"], n_layers, n_bootstrap, seed)
    return {"recall": _recall(t["facts"], t["paragraphs"], n_bootstrap, seed),
            "interference": _interference(t["facts"], t["documents"], n_bootstrap, seed),
            "locality": locality, "layers": _layers(circuits, locality, n_bootstrap, seed),
            "generation": _generation(t["generations"], n_bootstrap, seed)}


# ---- finding ----------------------------------------------------------------------------------------
def _side(interval: list, above: str, below: str) -> str:
    low, high = interval
    return UNTESTED if low is None or high is None else above if low > 0 else below if high < 0 else "no difference"


def _block(row, name: str, key: str = "mean") -> dict:
    return {key: json_number(row[name]), "interval_95": [json_number(row[f"{name}_{e}"]) for e in ("lo", "hi")]}


def _comparison(r: pd.Series, plain: pd.Series | None, i: pd.Series | None) -> dict:
    """One alpha > 0 point against alpha = 0: recall difference and interference change, with verdicts."""
    recall = {"value": json_number(r["top1"]), "plain": None if plain is None else json_number(plain["top1"]),
              **_block(r, "top1_difference", "difference"), "n_paired": int(r["n_paired"])}
    recall["verdict"] = _side(recall["interval_95"], *RECALL_VERDICTS[:2])
    inter = ({"gap": None, "change": None, "interval_95": [None, None], "n_shared": 0, "n_exclusive": 0} if i is None
             else {"gap": json_number(i["gap"]), **_block(i, "gap_change", "change"), "n_shared": int(i["n_shared"]),
                   "n_exclusive": int(i["n_exclusive"])})
    cost = None if i is None or not i["n_cost"] else {**_block(i, "cost", "cost"), "n_paired": int(i["n_cost"])}
    inter["sharing_cost"] = cost
    if min(inter["n_shared"], inter["n_exclusive"]) >= MIN_GROUP:  # one document: no spread to resample
        inter["test"], inter["verdict"] = "gap", _side(inter["interval_95"], *INTERFERENCE_VERDICTS[1::-1])
    elif cost is not None:  # no within-run contrast: what sharing loses against disjoint slots (0 at alpha 0)
        inter["test"], inter["verdict"] = "sharing cost", _side(cost["interval_95"], *INTERFERENCE_VERDICTS[1::-1])
    else:
        inter["test"], inter["verdict"] = None, UNTESTED
    return {"documents": int(r["documents"]), "model": str(r["model"]), "hook_layer": int(r["hook_layer"]),
            "allocation": str(r["allocation"]), "alpha": float(r["alpha"]), "recall": recall, "interference": inter}


def _layer_sweep(layers: pd.DataFrame, budget: str | None) -> dict:
    """At alpha = 0 (one plain model: the first allocation's row), per number of documents, model and
    hook layer: its edge share and ratio (in-circuit share of its edges: edge_share favours layers with
    more edges leaving them) at `budget` (None: the smallest present) and share of knowledge neurons;
    `most`: per "model/documents", the hook layer with the largest of each."""
    plain = layers[layers["alpha"] == 0]
    budget = budget if budget is not None else min(plain["budget"], key=budget_value, default=None)
    rows = plain[plain["budget"] == budget].drop_duplicates(["documents", "model", "hook_layer"])
    entries = [{"documents": int(r["documents"]), "model": str(r["model"]), "hook_layer": int(r["hook_layer"]),
                **{k: _block(r, k) for k in ("edge_share", "ratio", "neurons_at_layer")}}
               for _, r in rows.iterrows()]
    most = {f"{m}/{n}": {k: int(part.loc[part[k].idxmax(), "hook_layer"]) if part[k].notna().any() else None
                     for k in ("edge_share", "ratio", "neurons_at_layer")}
            for (n, m), part in rows.groupby(["documents", "model"])}
    return {"budget": budget, "layers": entries, "most": most}


def _statement(counts: dict, best: dict | None) -> str:
    r, i, n = counts["recall"], counts["interference"], sum(counts["recall"].values())
    if not n:
        return "Not tested: no point with alpha > 0 has an alpha = 0 counterpart."
    text = (f"Against plain training (alpha = 0), the inductive loss raises top-1 recall of the documents' facts at "
            f"{r['beats']} of {n} points (documents, model, hook layer, allocation, alpha > 0), "
            f"lowers it at {r['worse']}, "
            f"leaves it indistinguishable at {r['no difference']} and cannot be compared at {r[UNTESTED]} (95% "
            f"paired bootstrap intervals, no correction for the {n} comparisons).")
    if best is not None:
        low, high = best["recall"]["interval_95"]
        text += (f" The largest difference: {best['allocation']} at model {best['model']}'s hook layer "
                 f"{best['hook_layer']}, alpha "
                 f"{best['alpha']:g}, {best['recall']['difference']:+.3f} [{low:+.3f}, {high:+.3f}].")
    return text + (f" Interference -- the gap between exclusive and shared documents' top-1 where both groups have "
                   f"{MIN_GROUP} documents, else the sharing cost (partitioned's top-1 minus the point's, paired per "
                   f"fact; 0 at alpha = 0) -- falls at {i['reduced']}, rises at {i['increased']}, is "
                   f"indistinguishable at {i['no difference']} and cannot be tested at {i[UNTESTED]} (partitioned "
                   "itself: no shared documents, nothing to compare with).")


def memory_finding(inputs: dict[str, pd.DataFrame], n_bootstrap: int, seed: int,
                   tables: dict[str, pd.DataFrame] | None = None, budget: str | None = None) -> dict:
    """For every alpha > 0 point: top-1 recall minus its alpha = 0 point's (paired per fact and seed;
    "beats" when the 95% interval lies above 0, "worse" below, else "no difference") and interference:
    the change of the gap between exclusive and shared documents ("reduced" when its interval lies
    below 0, "increased" above) when both groups hold MIN_GROUP documents (a lone document's recall
    has no spread to resample), else the sharing cost against partitioned (0 at alpha 0, so above 0 is
    "increased"); "cannot be tested" without either (partitioned itself). recall_verdict / interference_verdict: the
    first of those verdicts (in that order) some point has; holds: some point beats plain training on
    recall or reduces the gap. tables: memory_tables' output when at hand; budget: the layer sweep's
    (None: the smallest).

    -> {finding, holds, verdict, recall_verdict, interference_verdict, counts, effect, comparisons
        [{documents, model, hook_layer, allocation, alpha, recall {value, plain, difference, interval_95,
        n_paired, verdict}, interference {gap, change, interval_95, n_shared, n_exclusive, sharing_cost
        {cost, interval_95, n_paired} or None, test ("gap" | "sharing cost" | None), verdict}}],
        best (the comparison with the largest recall difference; None without one), layer_sweep
        {budget, layers, most}, seeds, n_bootstrap, statement}."""
    tables = tables or memory_tables(inputs, n_bootstrap, seed)
    recall, inter = tables["recall"], tables["interference"].set_index(POINT)
    plain = recall[recall["alpha"] == 0].set_index(BASE)
    comparisons = [_comparison(r, plain.loc[tuple(r[BASE])] if tuple(r[BASE]) in plain.index else None,
                               inter.loc[tuple(r[POINT])] if tuple(r[POINT]) in inter.index else None)
                   for _, r in recall[recall["alpha"] > 0].iterrows()]
    counts = {key: {v: sum(c[key]["verdict"] == v for c in comparisons) for v in (*verdicts[:3], UNTESTED)}
              for key, verdicts in (("recall", RECALL_VERDICTS), ("interference", INTERFERENCE_VERDICTS))}
    rv, iv = (next((v for v in verdicts[:3] if counts[key][v]), UNTESTED)
              for key, verdicts in (("recall", RECALL_VERDICTS), ("interference", INTERFERENCE_VERDICTS)))
    best = max((c for c in comparisons if c["recall"]["difference"] is not None),
               key=lambda c: c["recall"]["difference"], default=None)
    holds = rv == "beats" or iv == "reduced"
    parts = [p for p, ok in (("some alpha > 0 beats plain training on recall", rv == "beats"),
                             ("some alpha > 0 reduces interference", iv == "reduced")) if ok]
    verdict = "holds: " + " and ".join(parts) if holds else f"not supported: recall {rv}, interference {iv}"
    return {"finding": MEMORY_FINDING, "holds": holds, "verdict": verdict, "recall_verdict": rv,
            "interference_verdict": iv, "counts": counts, "comparisons": comparisons, "best": best,
            "effect": "top-1 of the documents' facts, alpha > 0 minus alpha = 0 of the same documents, hook layer and "
                      "allocation, paired per fact and seed; interference gap = exclusive - shared documents' top-1",
            "layer_sweep": _layer_sweep(tables["layers"], budget), "n_bootstrap": int(n_bootstrap),
            "seeds": sorted(int(s) for s in inputs["facts"]["seed"].unique()) if len(inputs["facts"]) else [],
            "statement": _statement(counts, best)}


def _text(x, interval=None, sign: str = "") -> str:
    """"0.500" / "+0.400 [+0.287, +0.500]"; "n/a" for None."""
    if x is None:
        return "n/a"
    return f"{x:{sign}.3f}" + ("" if interval is None else " [{:{s}.3f}, {:{s}.3f}]".format(*interval, s=sign))


def _cost_text(cost: dict | None) -> str:
    return "n/a" if cost is None else _text(cost["cost"], cost["interval_95"], "+")


def memory_markdown(finding: dict | None) -> list[str]:
    """The "Document memory" section of findings.md from memory_finding's summary (None: not run)."""
    if finding is None:
        return ["## Document memory", "", "Not tested: no document-memory summary was given.", ""]
    rows = [f"| {c['documents']} | {c['model']} | {c['hook_layer']} | {c['allocation']} | {c['alpha']:g} | "
            f"{_text(r['value'])} | "
            f"{_text(r['plain'])} | {_text(r['difference'], r['interval_95'], '+')} | {r['verdict']} | "
            f"{_text(i['gap'])} | {_text(i['change'], i['interval_95'], '+')} | "
            f"{_cost_text(i['sharing_cost'])} | {i['verdict']} |"
            for c in finding["comparisons"] for r, i in [(c["recall"], c["interference"])]]
    sweep = finding["layer_sweep"]
    shares = ("edge_share", "ratio", "neurons_at_layer")
    layers = [f"| {e['documents']} | {e['model']} | {e['hook_layer']} | "
              + " | ".join(_text(e[k]["mean"], e[k]["interval_95"]) for k in shares) + " |" for e in sweep["layers"]]
    return ["## Document memory", "", finding["statement"], "", f"Verdict: {finding['verdict']}.", "",
            "Top-1 of the documents' facts and the interference gap (exclusive − shared documents' top-1) at each "
            "alpha > 0 against alpha = 0 (plain training) of the same documents, hook layer and allocation; the "
            "sharing cost: partitioned's top-1 minus the point's at the same alpha and layer (what sharing slots "
            "loses against disjoint ones); paired differences with 95% seeded bootstrap intervals.", "",
            "| documents | model | hook layer | allocation | alpha | top-1 | top-1 at alpha 0 | difference [95%] | "
            "verdict | gap | gap change [95%] | sharing cost [95%] | interference |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
            f"Layer sweep at alpha = 0 (one plain model; edge budget {sweep['budget']}): which hook layer holds the "
            "documents' knowledge.", "",
            "| documents | model | hook layer | share of the circuit's edges leaving it [95%] | share of its edges "
            "in the circuit [95%] | share of knowledge neurons in it [95%] |", "|---|---|---|---|---|---|", *layers, ""]


__all__ = ["memory_tables", "memory_finding", "memory_markdown", "POINT", "RECALL_COLUMNS", "INTERFERENCE_COLUMNS",
           "LOCALITY_COLUMNS", "LAYERS_COLUMNS", "GENERATION_COLUMNS"]
