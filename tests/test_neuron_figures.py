"""Knowledge-neuron figures: hand-made per-seed neuron tables following the contract of
kcircuits.neurons.stage (two seeds, three checkpoints, two layers), whose plotted values follow a
closed form; every figure drawn through `kcircuits figure`, written as PDF and PNG with the same bytes
on a rerun; a missing, empty or outdated table is a one-line error naming the file."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, assert_figure_drawn_twice_alike, checkpoint_meta
from kcircuits.figures import neurons as nf
from kcircuits.figures.seeds import seed_summary
from kcircuits.figures.stage import all_figures

FIGURES = all_figures()

NEURON_FIGURES = [name for name, f in FIGURES.items() if f.stage == "neurons"]
CKPTS = [("epoch-000", 0.0, 0), ("epoch-001", 1.0, 10), ("epoch-002", 2.0, 20)]
TYPES = ["new", "revised"]
GROUPS = ["low", "high"]  # ascending frequency; "high" sorts first
ATTRS = ["city", "company"]
METHODS = ["ig", "baseline"]
BUDGETS = ["0.1", "30"]
LAYERS = [0, 1]
SETTINGS = json.dumps({"seed": 0, "neurons": {"erase": {"neurons": 20}}, "circuits": {"edge_budgets": [0.1, 30]}})


def checkpoints(seed: int):
    for o, (name, epoch, step) in enumerate(CKPTS):
        yield o, epoch, {**checkpoint_meta(seed, name, epoch, step), "order": o}


def facts():
    """(fact, type, freq_group, attribute, k): two facts per cell."""
    cells = [(t, g, a) for t in TYPES for g in GROUPS for a in ATTRS]
    return [(i * 2 + k, t, g, a, k) for i, (t, g, a) in enumerate(cells) for k in range(2)]


def fact_columns(fact, etype, group, attr) -> dict:
    return {"fact": fact, "entity_id": fact, "name": f"E{fact}", "type": etype, "freq_group": group,
            "frequency": 1 if group == "low" else 9, "attribute": attr}


def layers_table(seed: int) -> pd.DataFrame:
    """Per attribute, value target: IG 1 neuron in layer 0 and 3 + seed in layer 1 at the last
    checkpoint (5 and 0 before); baseline 2 and 2; the original target 9 and 0 (not drawn)."""
    rows = []
    for o, _, meta in checkpoints(seed):
        for etype in TYPES:
            for group in GROUPS:
                for attr in ATTRS:
                    for method in METHODS:
                        for kind in ("value", "original"):
                            for layer in LAYERS:
                                if kind == "original":
                                    count = 9 if layer == 0 else 0
                                elif method == "baseline":
                                    count = 2
                                elif o < 2:
                                    count = 5 if layer == 0 else 0
                                else:
                                    count = 1 if layer == 0 else 3 + seed
                                if count:  # layers without neurons have no row
                                    rows.append({**meta, "type": etype, "freq_group": group, "attribute": attr,
                                                 "method": method, "target_kind": kind, "layer": layer,
                                                 "count": count, "share": np.nan})
    return pd.DataFrame(rows)


def interventions_table(seed: int) -> pd.DataFrame:
    """P before 0.2 / 0.6 for the cell's two facts; knowledge neurons on own prompts: suppress halves
    the first and thirds the second, amplify x1.5 (+ 0.1 per seed); everything else x0.9."""
    rows = []
    for o, _, meta in checkpoints(seed):
        for fact, etype, group, attr, k in facts():
            for method in METHODS:
                for neurons in ("knowledge", "random"):
                    for operation in ("suppress", "amplify"):
                        for prompts in ("own", "unrelated"):
                            before = 0.2 if k == 0 else 0.6
                            if neurons == "knowledge" and prompts == "own":
                                factor = ((0.5 if k == 0 else 1 / 3) if operation == "suppress" else 1.5 + 0.1 * seed)
                            else:
                                factor = 0.9
                            after = before * factor
                            rows.append({**meta, **fact_columns(fact, etype, group, attr), "method": method,
                                         "neurons": neurons, "operation": operation, "prompts": prompts,
                                         "n_neurons": 3, "n_prompts": 4, "p_before": before, "p_after": after,
                                         "change": (after - before) / before})
    return pd.DataFrame(rows)


def edits_table(seed: int) -> pd.DataFrame:
    """Each fact edited at each checkpoint; success@1 for facts k = 0 from the second checkpoint on."""
    rows = []
    for o, _, meta in checkpoints(seed):
        for fact, etype, group, attr, k in facts():
            success = bool(k == 0 and o > 0)
            rows.append({**meta, **fact_columns(fact, etype, group, attr), "template": 0, "old_token": 5,
                         "new_value": "X", "new_token": 7, "n_neurons": 3, "success_at_1": success,
                         "success_at_5": success or o == 2, "changed": True, "prob_before": 0.01,
                         "prob_after": 0.5 if success else 0.05, "rank_before": 40, "rank_after": 1 if success else 3,
                         "ppl_intra_before": 10.0 + o, "ppl_intra_after": 12.0 + o + seed,
                         "ppl_inter_before": 8.0, "ppl_inter_after": 8.5})
    return pd.DataFrame(rows)


def erase_table(seed: int) -> pd.DataFrame:
    rows = []
    for o, _, meta in checkpoints(seed):
        for i, attr in enumerate(ATTRS):
            for scope in ("erased", "other"):
                erased = scope == "erased"
                rows.append({**meta, "attribute": attr, "scope": scope, "n_neurons": 20, "n_prompts": 8,
                             "accuracy_before": 0.8, "accuracy_after": (0.2 + 0.1 * seed) if erased else 0.78,
                             "ppl_before": 5.0 + i, "ppl_after": 50.0 if erased else 5.5})
    return pd.DataFrame(rows)


def evolution_table(seed: int) -> pd.DataFrame:
    """neurons_per_fact 2 + o (city) and 4 + o (company, with 3 facts instead of 1), + seed; mean layer
    0.5 + 0.1 x group + attribute; survival of revised original-value neurons 1 - 0.3 o."""
    rows = []
    for o, _, meta in checkpoints(seed):
        for gi, group in enumerate(GROUPS):
            for etype in TYPES:
                for a, attr in enumerate(ATTRS):
                    for method in METHODS:
                        for kind in ("value", "original"):
                            if kind == "original" and etype != "revised":
                                continue
                            rows.append({**meta, "type": etype, "freq_group": group, "attribute": attr,
                                         "method": method, "target_kind": kind, "n_facts": 1 + 2 * a,
                                         "neurons_per_fact": 2.0 + 2 * a + o + seed, "mean_layer": 0.5 + 0.1 * gi + a,
                                         "jaccard_prev": np.nan if o == 0 else 0.5,
                                         "jaccard_final": 0.3 * (o + 1) if o < 2 else 1.0,
                                         "share_of_first": 1 - 0.3 * o, "share_in_value": 0.0})
    return pd.DataFrame(rows)


def overlap_table(seed: int) -> pd.DataFrame:
    """n_in_circuit of n_neurons = 4 (city) / 8 (company): 1 + o (city) and 2 (company)."""
    rows = []
    for o, _, meta in checkpoints(seed):
        for etype in TYPES:
            for group in GROUPS:
                for a, attr in enumerate(ATTRS):
                    for method in METHODS:
                        for budget in BUDGETS:
                            n, inside = (4, 1 + o) if a == 0 else (8, 2)
                            rows.append({**meta, "type": etype, "freq_group": group, "attribute": attr,
                                         "method": method, "budget": budget, "n_neurons": n, "n_in_circuit": inside,
                                         "share": inside / n})
    return pd.DataFrame(rows)


MAKERS = {"layers": layers_table, "interventions": interventions_table, "edits": edits_table, "erase": erase_table,
          "evolution": evolution_table, "overlap": overlap_table}
FILES = {"layers": "neuron_layers", "interventions": "neuron_interventions", "edits": "neuron_edits",
         "erase": "neuron_erase", "evolution": "neuron_evolution", "overlap": "neuron_overlap"}


def two_seeds(make) -> pd.DataFrame:
    return pd.concat([make(0), make(1)], ignore_index=True)


@pytest.fixture(scope="module")
def seed_tables(tmp_path_factory):
    """Two seeds' tables in the seed layout (results/{run}/seed-N/analysis/neuron_*.parquet) and an
    entity table for the group order."""
    root = tmp_path_factory.mktemp("neuron_figures")
    paths = {option: [] for option in MAKERS}
    for seed in (0, 1):
        folder = root / f"seed-{seed}" / "analysis"
        folder.mkdir(parents=True)
        for option, make in MAKERS.items():
            path = folder / f"{FILES[option]}.parquet"
            make(seed).to_parquet(path)
            paths[option].append(path)
    pd.DataFrame({"entity_id": [0, 1, 2], "freq_group": ["high", "low", None], "frequency": [9, 1, 3]}).to_parquet(
        root / "entities.parquet")
    return root, paths


def figure_argv(root, name: str, tables: dict, pdf=None, png=None) -> list[str]:
    """The figure command for `tables`, with its outputs when pdf and png are given."""
    argv = ["figure", name, "--settings", SETTINGS, "--entities", str(root / "entities.parquet")]
    for option in FIGURES[name].inputs:
        argv += [f"--{option.replace('_', '-')}", *map(str, tables[option])]
    return [*argv, "--pdf", str(pdf), "--png", str(png)] if pdf else argv


# ---- registry, rules, captions -----------------------------------------------------------------------
def test_the_six_neuron_figures_have_entries_and_captions():
    assert NEURON_FIGURES == ["neurons_layers", "neurons_suppress", "neurons_edit", "neurons_erase",
                              "neurons_training", "neurons_circuit_overlap"]
    for name in NEURON_FIGURES:
        figure = FIGURES[name]
        ((option, key),) = figure.inputs.items()
        assert option in nf.COLUMNS and key in (f"neuron_{option}", f"seed_neuron_{option}"), name  # every seed's
        assert figure.stage == "neurons" and figure.sections is None and figure.category == "Knowledge neurons"
        caption = figure.caption.read_text(encoding="utf-8")
        assert figure.caption == REPO / "report" / f"{name}.rst"
        assert 'snakemake.config["run"]' in caption and 'snakemake.config["train"]["seeds"]' in caption, name


# ---- plotted frames follow the tables' closed forms ------------------------------------------------
def test_layer_shares_last_checkpoint_value_target_attributes_pooled():
    shares = nf.layer_shares(two_seeds(layers_table), GROUPS)
    got = shares.set_index(["seed", "type", "freq_group", "method", "layer"])["value"]
    assert got[(0, "new", "low", "ig", 0)] == pytest.approx(25.0)
    assert got[(0, "new", "low", "ig", 1)] == pytest.approx(75.0)
    assert got[(1, "revised", "high", "ig", 0)] == pytest.approx(20.0)
    assert got[(0, "new", "low", "baseline", 1)] == pytest.approx(50.0)
    assert shares.groupby(["seed", "type", "freq_group", "method"])["value"].sum().to_numpy() == pytest.approx(100.0)
    summary = seed_summary(shares, ["type", "freq_group", "method", "layer"]).set_index(
        ["type", "freq_group", "method", "layer"])
    row = summary.loc[("new", "low", "ig", 0)]
    assert row["mean"] == pytest.approx(22.5) and row["n_seeds"] == 2 and row["lo"] <= 22.5 <= row["hi"]
    # a layer without a row counts as 0 where the cell has neurons
    early = layers_table(0).assign(order=lambda t: t["order"].where(t["order"] < 2, -1))
    got = nf.layer_shares(early, GROUPS).set_index(["type", "freq_group", "method", "layer"])["value"]
    assert got[("new", "low", "ig", 1)] == 0.0 and got[("new", "low", "ig", 0)] == 100.0


def test_intervention_changes_are_the_originals_ratio_of_means():
    changes = nf.intervention_changes(two_seeds(interventions_table), GROUPS)
    got = changes.set_index(["seed", "method", "operation", "prompts", "neurons", "type"])["value"]
    # mean P before 0.4; after (0.1 + 0.2) / 2 = 0.15: -62.5% (the mean of per-fact changes would be -58.3%)
    assert got[(0, "ig", "suppress", "own", "knowledge", "new")] == pytest.approx(-62.5)
    assert got[(1, "baseline", "amplify", "own", "knowledge", "revised")] == pytest.approx(60.0)
    assert got[(0, "ig", "suppress", "unrelated", "knowledge", "new")] == pytest.approx(-10.0)
    assert got[(0, "ig", "suppress", "own", "random", "revised")] == pytest.approx(-10.0)
    assert len(changes) == 2 * 2 * 2 * 2 * 2 * 2


def test_edit_erase_evolution_and_overlap_frames():
    edits = nf.edit_frame(two_seeds(edits_table), GROUPS).set_index(["seed", "order", "type", "measure"])["value"]
    assert edits[(0, 0, "new", "success_at_1")] == 0.0 and edits[(0, 1, "new", "success_at_1")] == 0.5
    assert edits[(1, 2, "revised", "success_at_5")] == 1.0 and edits[(0, 2, "new", "n_edits")] == 8
    assert edits[(1, 1, "new", "intra_after")] == pytest.approx(14.0)
    assert edits[(0, 1, "new", "intra_before")] == pytest.approx(11.0)

    erase = nf.erase_frame(two_seeds(erase_table)).set_index(["seed", "attribute", "scope", "measure", "when"])["value"]
    assert len(erase) == 2 * 2 * 2 * 2 * 2  # the last checkpoint only
    assert erase[(1, "city", "erased", "accuracy", "after")] == pytest.approx(0.3)
    assert erase[(0, "company", "other", "ppl", "before")] == pytest.approx(6.0)

    evo = nf.evolution_frame(two_seeds(evolution_table), GROUPS)
    got = evo.set_index(["seed", "order", "method", "type", "freq_group", "measure"])["value"]
    # weighted by facts: (1 x (2 + o) + 3 x (4 + o)) / 4 = 3.5 + o (+ seed)
    assert got[(0, 1, "ig", "new", "low", "neurons_per_fact")] == pytest.approx(4.5)
    assert got[(1, 2, "baseline", "revised", "high", "neurons_per_fact")] == pytest.approx(6.5)
    # the mean layer weighted by (fact, neuron) pairs: 1 x 2 (city, layer 0.6), 3 x 4 (company, layer 1.6)
    assert got[(0, 0, "ig", "new", "high", "mean_layer")] == pytest.approx((2 * 0.6 + 12 * 1.6) / 14)
    assert (0, 0, "ig", "new", "low", "jaccard_prev") not in got.index  # no previous checkpoint
    survival = evo[evo["measure"] == nf.SURVIVAL]
    assert set(survival["type"]) == {"revised"}
    assert got[(0, 2, "ig", "revised", "low", nf.SURVIVAL)] == pytest.approx(0.4)

    overlap = nf.overlap_frame(two_seeds(overlap_table), GROUPS)
    got = overlap.set_index(["seed", "order", "method", "budget", "type", "freq_group"])["value"]
    assert got[(0, 0, "ig", "0.1", "new", "low")] == pytest.approx(3 / 12)  # (1 + 2) / (4 + 8)
    assert got[(1, 2, "baseline", "30", "revised", "high")] == pytest.approx(5 / 12)


# ---- figures through the CLI -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEURON_FIGURES)
def test_neuron_figures_are_written_and_reproducible(seed_tables, name, tmp_path):
    root, paths = seed_tables
    assert_figure_drawn_twice_alike(figure_argv(root, name, paths), tmp_path)


def test_one_seed_draws_without_intervals(seed_tables, tmp_path):
    from kcircuits.cli import main

    root, paths = seed_tables
    one = {option: files[:1] for option, files in paths.items()}
    for name in ("neurons_suppress", "neurons_training"):
        assert main(figure_argv(root, name, one, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")) == 0
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_group_order_follows_frequency(seed_tables, tmp_path, monkeypatch):
    """Columns in ascending frequency: low before high although 'high' sorts first."""
    from kcircuits.cli import main

    root, paths = seed_tables
    titles = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a: titles.extend(ax.get_title() for ax in fig.axes))
    assert main(figure_argv(root, "neurons_layers", paths, tmp_path / "l.pdf", tmp_path / "l.png")) == 0
    assert titles[:2] == ["K_compl (new), low frequency", "K_compl (new), high frequency"]


def _error(capsys, root, name, tables, tmp_path) -> str:
    from kcircuits.cli import main

    pdf, png = tmp_path / "x.pdf", tmp_path / "x.png"
    assert main(figure_argv(root, name, tables, pdf, png)) == 2
    assert not pdf.exists() and not png.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kcircuits: ") and "Traceback" not in err
    return err


def test_bad_tables_are_one_line_errors_naming_the_file(seed_tables, tmp_path, capsys):
    root, paths = seed_tables
    bad = tmp_path / "seed-1" / "neuron_interventions.parquet"
    bad.parent.mkdir()
    interventions_table(1).drop(columns=["p_before"]).to_parquet(bad)
    err = _error(capsys, root, "neurons_suppress", {"interventions": [paths["interventions"][0], bad]}, tmp_path)
    assert str(bad) in err and "p_before" in err and "--interventions" in err

    empty = tmp_path / "empty.parquet"
    erase_table(0).head(0).to_parquet(empty)
    err = _error(capsys, root, "neurons_erase", {"erase": [empty]}, tmp_path)
    assert str(empty) in err and "no rows" in err

    missing = tmp_path / "nowhere.parquet"
    assert str(missing) in _error(capsys, root, "neurons_training", {"evolution": [missing]}, tmp_path)

    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet\n")
    assert str(garbage) in _error(capsys, root, "neurons_edit", {"edits": [garbage]}, tmp_path)

    # readable, but none of what the figure draws (an evolution table has value-target rows whatever the neurons)
    original = tmp_path / "original.parquet"
    evolution_table(0).query("target_kind == 'original'").to_parquet(original)
    err = _error(capsys, root, "neurons_training", {"evolution": [original]}, tmp_path)
    assert str(original) in err and "value target" in err


@pytest.mark.parametrize("name", ["neurons_layers", "neurons_suppress", "neurons_edit", "neurons_circuit_overlap"])
def test_tables_empty_when_nothing_qualified_give_a_figure_saying_so(seed_tables, name, tmp_path, caplog):
    """No fact editable, no knowledge neuron...: a legitimate outcome (small runs), not a failed workflow."""
    from kcircuits.cli import main

    root, paths = seed_tables
    (option,) = FIGURES[name].inputs
    empty = []
    for seed in (0, 1):
        path = tmp_path / f"seed-{seed}" / f"{option}.parquet"
        path.parent.mkdir()
        MAKERS[option](seed).head(0).to_parquet(path)
        empty.append(path)
    pdf, png = tmp_path / "e.pdf", tmp_path / "e.png"
    assert main(figure_argv(root, name, {option: empty}, pdf, png)) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("nothing to draw" in r.getMessage() or "the figure says so" in r.getMessage() for r in caplog.records)
    if name == "neurons_layers":  # rows, but only of the original target: the same
        original = tmp_path / "original.parquet"
        layers_table(0).query("target_kind == 'original'").to_parquet(original)
        assert main(figure_argv(root, name, {option: [original]}, pdf, png)) == 0
