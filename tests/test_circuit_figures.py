"""Circuit figures and multi-seed curves: hand-made summary tables whose Hit@k / faithfulness follow a
closed form, so every plotted mean and interval is known in advance; figures written, byte-identical
on rerun; the rules planned by a dry run with two training seeds."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import TINY, assert_figure_drawn_twice_alike, checkpoint_meta, planned_jobs, snakemake
from kcircuits.figures import circuits as cf
from kcircuits.figures.seeds import bootstrap_interval, draw_curve, read_seed_tables, seed_summary
from kcircuits.figures.stage import all_figures

FIGURES = all_figures()

CIRCUIT_FIGURES = [name for name, f in FIGURES.items() if f.stage == "circuits"]

CKPTS = [("epoch-000", 0.0, 0), ("epoch-001", 1.0, 10), ("epoch-002", 2.0, 20)]
TASKS = ["city", "company"]
TYPES = ["new", "revised"]
GROUPS = ["low", "high"]
BUDGETS = ["0.1", "30"]
SOURCES = ["epoch-000", "epoch-002"]


def own_value(seed, o, ti, yi, gi):
    """Own-circuit Hit@k (zero ablation, first budget) of checkpoint o, task ti, type yi, group gi."""
    return 0.1 * o + 0.05 * ti + 0.02 * yi + 0.01 * gi + 0.03 * seed


def hits_table(seed: int) -> pd.DataFrame:
    rows = []
    for o, (name, epoch, step) in enumerate(CKPTS):
        for ti, task in enumerate(TASKS):
            for yi, etype in enumerate(TYPES):
                for gi, group in enumerate(GROUPS):
                    for tyi, ttype in enumerate(TYPES):
                        for tgi, tgroup in enumerate(GROUPS):
                            for budget in BUDGETS:
                                for ablation in ("zero", "mean"):
                                    value = (own_value(seed, o, ti, yi, gi) - 0.1 * abs(yi - tyi) - 0.05 * abs(gi - tgi)
                                             + (0.2 if ablation == "mean" else 0) + (0.1 if budget == "30" else 0))
                                    rows.append({**checkpoint_meta(seed, name, epoch, step), "task": task,
                                                 "type": etype, "freq_group": group, "budget": budget,
                                                 "target_type": ttype, "target_freq_group": tgroup,
                                                 "ablation": ablation, "hit_at_k": value, "mean_rank": 3.0,
                                                 "n_prompts": 20, "full_model_hit_at_k": 0.9 - 0.1 * seed + 0.01 * o})
    return pd.DataFrame(rows)


def transplant_table(seed: int) -> pd.DataFrame:
    """A source's circuit on checkpoint o: its own value there, 0.1 lower per checkpoint of distance."""
    rows = []
    for o, (name, epoch, step) in enumerate(CKPTS):
        for source in SOURCES:
            s = [c[0] for c in CKPTS].index(source)
            for ti, task in enumerate(TASKS):
                for yi, etype in enumerate(TYPES):
                    for gi, group in enumerate(GROUPS):
                        for budget in BUDGETS:
                            rows.append({**checkpoint_meta(seed, name, epoch, step), "source_checkpoint": source,
                                         "task": task, "type": etype, "freq_group": group, "budget": budget,
                                         "n_edges": 30, "ablation": "zero", "mean_rank": 2.0,
                                         "hit_at_k": own_value(seed, o, ti, yi, gi) - 0.1 * abs(o - s)
                                         + (0.1 if budget == "30" else 0)})
    return pd.DataFrame(rows)


def stats_table(seed: int) -> pd.DataFrame:
    rows = []
    for o, (name, epoch, step) in enumerate(CKPTS):
        for ti, task in enumerate(TASKS):
            for etype in TYPES:
                for group in GROUPS:
                    for budget in BUDGETS:
                        rows.append({**checkpoint_meta(seed, name, epoch, step), "task": task, "type": etype,
                                     "freq_group": group, "budget": budget, "n_edges": 30 if budget == "30" else 100,
                                     "n_nodes": 9, "edge_entropy": 1.0,
                                     "faithfulness": 0.5 + 0.1 * o + 0.02 * seed + 0.1 * ti,
                                     "ld_clean": 2.0, "ld_corrupted": 0.0, "ld_circuit": 1.0})
    return pd.DataFrame(rows)


def two_seeds(make) -> pd.DataFrame:
    return pd.concat([make(0), make(1)], ignore_index=True)


# ---- intervals over seeds ---------------------------------------------------------------------------
def test_bootstrap_interval_known_answers_and_seaborn_agreement():
    assert bootstrap_interval(np.array([0.4])) == (0.4, 0.4)
    assert bootstrap_interval(np.array([0.3, 0.3, 0.3])) == pytest.approx((0.3, 0.3))
    # two seeds: resampled means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4 -> percentiles 0 and 1
    assert bootstrap_interval(np.array([0.0, 1.0])) == (0.0, 1.0)
    from seaborn._statistics import EstimateAggregator  # same interval as lineplot(errorbar=("ci", 95), seed=0)

    values = np.random.default_rng(3).random(4)
    ref = EstimateAggregator("mean", ("ci", 95), n_boot=1000, seed=0)(pd.DataFrame({"y": values}), "y")
    assert bootstrap_interval(values) == pytest.approx((ref["ymin"], ref["ymax"]))


def test_seed_summary_means_intervals_and_duplicates():
    frame = pd.DataFrame({"seed": [0, 1, 2, 0], "x": [1, 1, 1, 2], "value": [0.2, 0.4, 0.9, 0.7]})
    out = seed_summary(frame, ["x"]).set_index("x")
    assert out.loc[1, "mean"] == pytest.approx(0.5) and out.loc[1, "n_seeds"] == 3
    assert out.loc[1, "lo"] < 0.5 < out.loc[1, "hi"] and 0.2 <= out.loc[1, "lo"] and out.loc[1, "hi"] <= 0.9
    assert (out.loc[2, ["mean", "lo", "hi"]] == 0.7).all() and out.loc[2, "n_seeds"] == 1
    with pytest.raises(ValueError, match="several rows per seed"):
        seed_summary(pd.concat([frame, frame.head(1)]), ["x"])


def test_read_seed_tables(tmp_path):
    table = pd.DataFrame({"value": [1.0]})
    (tmp_path / "seed-4").mkdir()
    for path in (tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "seed-4" / "s.parquet"):
        table.to_parquet(path)
    assert read_seed_tables(tmp_path / "a.parquet")["seed"].tolist() == [0]  # before the seed layout
    assert read_seed_tables([tmp_path / "a.parquet", tmp_path / "b.parquet"])["seed"].tolist() == [0, 1]
    assert read_seed_tables([tmp_path / "seed-4" / "s.parquet"])["seed"].tolist() == [4]
    table.assign(seed=7).to_parquet(tmp_path / "c.parquet")
    assert read_seed_tables([tmp_path / "c.parquet"])["seed"].tolist() == [7]  # a seed column wins


def test_draw_curve_band_only_with_several_seeds():
    from matplotlib.collections import PolyCollection

    from kcircuits.figures.style import pyplot

    plt, _ = pyplot()
    frame = pd.DataFrame({"seed": [0, 1, 0, 1], "epoch": [0.0, 0.0, 1.0, 1.0], "value": [0.1, 0.3, 0.5, 0.9]})
    fig, (a, b) = plt.subplots(1, 2)
    draw_curve(a, seed_summary(frame, ["epoch"]), "epoch", "red")
    draw_curve(b, seed_summary(frame[frame.seed == 0], ["epoch"]), "epoch", "red")
    assert a.lines[0].get_ydata().tolist() == pytest.approx([0.2, 0.7])
    assert sum(isinstance(c, PolyCollection) for c in a.collections) == 1
    assert b.lines[0].get_ydata().tolist() == pytest.approx([0.1, 0.5]) and not b.collections
    plt.close(fig)


# ---- plotted frames equal the tables' means --------------------------------------------------------
def test_hits_frame_means_over_tasks_and_seeds():
    hits = two_seeds(hits_table)
    frame = cf.hits_frame(hits, "zero", "0.1")
    assert set(frame["series"]) == {cf.OWN, cf.FULL} and set(frame["task"]) == {*TASKS, cf.ALL_TASKS}
    summary = seed_summary(frame, ["task", "type", "freq_group", "series", "epoch"]).set_index(
        ["task", "type", "freq_group", "series", "epoch"])
    for o, (_, epoch, _) in enumerate(CKPTS):
        for yi, etype in enumerate(TYPES):
            for gi, group in enumerate(GROUPS):
                row = summary.loc[(cf.ALL_TASKS, etype, group, cf.OWN, epoch)]  # mean of ti (0.025), seeds (0.015)
                assert row["mean"] == pytest.approx(0.1 * o + 0.025 + 0.02 * yi + 0.01 * gi + 0.015)
                assert row["n_seeds"] == 2 and row["lo"] < row["mean"] < row["hi"]
                one = summary.loc[("company", etype, group, cf.OWN, epoch)]
                assert one["mean"] == pytest.approx(own_value(0.5, o, 1, yi, gi))
                assert summary.loc[("city", etype, group, cf.FULL, epoch), "mean"] == pytest.approx(0.85 + 0.01 * o)
    single = cf.hits_frame(hits_table(0).drop(columns=["seed", "full_model_hit_at_k"]).assign(seed=0), "zero", "30")
    assert set(single["series"]) == {cf.OWN}  # no full-model column: no reference line
    with pytest.raises(ValueError, match="edge budget '0.5'"):
        cf.hits_frame(hits, "zero", "0.5")


def test_cross_frame_sources_targets_and_last_checkpoint(tmp_path):
    hits = two_seeds(hits_table)
    frame = cf.cross_frame(hits, "zero", "0.1")
    last = frame[(frame["checkpoint"] == "epoch-002") & (frame["task"] == cf.ALL_TASKS)]
    summary = seed_summary(last, ["source_type", "source_group", "target_type", "target_group"]).set_index(
        ["source_type", "source_group", "target_type", "target_group"])["mean"]
    # revised/high circuit on new/low prompts: own value minus 0.1 (other type) and 0.05 (other group)
    assert summary[("revised", "high", "new", "low")] == pytest.approx(0.2 + 0.025 + 0.02 + 0.01 + 0.015 - 0.15)
    own = seed_summary(cf.hits_frame(hits, "zero", "0.1").query("task == @cf.ALL_TASKS and series == @cf.OWN"),
                       ["type", "freq_group", "epoch"]).set_index(["type", "freq_group", "epoch"])["mean"]
    for t in TYPES:  # the diagonal is each circuit on its own cell
        for g in GROUPS:
            assert summary[(t, g, t, g)] == pytest.approx(own[(t, g, 2.0)])
    out = cf.plot_cross_group(hits, GROUPS, TASKS, "zero", "0.1", 10, tmp_path / "x.pdf", tmp_path / "x.png")
    assert set(out["task"]) == {*TASKS, cf.ALL_TASKS} and len(out) == 3 * 16  # 4 x 4 cells per panel
    got = out.set_index(["task", "source_type", "source_group", "target_type", "target_group"])["mean"]
    assert got[(cf.ALL_TASKS, "revised", "high", "new", "low")] == pytest.approx(
        summary[("revised", "high", "new", "low")])


def test_transplant_meets_own_circuit_at_its_source():
    frame = cf.transplant_frame(two_seeds(transplant_table), two_seeds(hits_table), "zero", "0.1")
    assert set(frame["series"]) == {"circuit of epoch-000", "circuit of epoch-002", cf.OWN, cf.FULL}
    mean = seed_summary(frame, ["task", "type", "freq_group", "series", "epoch"]).set_index(
        ["task", "type", "freq_group", "series", "epoch"])["mean"]
    key = (cf.ALL_TASKS, "new", "low")
    assert mean[(*key, "circuit of epoch-000", 0.0)] == pytest.approx(mean[(*key, cf.OWN, 0.0)])
    assert mean[(*key, "circuit of epoch-002", 2.0)] == pytest.approx(mean[(*key, cf.OWN, 2.0)])
    assert mean[(*key, "circuit of epoch-000", 2.0)] == pytest.approx(mean[(*key, cf.OWN, 2.0)] - 0.2)


def test_faithfulness_frame_and_budget_order():
    stats = two_seeds(stats_table)
    frame = cf.faithfulness_frame(stats)
    assert len(frame) == len(stats) and frame["value"].equals(stats["faithfulness"])
    assert cf.budget_order(["30", "0.1", "0.25"], [0.1, 30]) == ["0.1", "30", "0.25"]
    mean = seed_summary(frame, ["task", "type", "freq_group", "budget", "epoch"]).set_index(
        ["task", "type", "freq_group", "budget", "epoch"])["mean"]
    assert mean[("company", "new", "low", "30", 1.0)] == pytest.approx(0.5 + 0.1 + 0.01 + 0.1)


# ---- figures through the CLI -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_tables(tmp_path_factory):
    """Two seeds' summary tables in the seed layout, and an entity table for the group order."""
    root = tmp_path_factory.mktemp("circuit_figures")
    paths = {name: [] for name in ("hits", "stats", "transplant")}
    for seed in (0, 1):
        folder = root / f"seed-{seed}" / "circuits"
        folder.mkdir(parents=True)
        for name, make in (("hits", hits_table), ("stats", stats_table), ("transplant", transplant_table)):
            make(seed).to_parquet(folder / f"summary_{name}.parquet")
            paths[name].append(folder / f"summary_{name}.parquet")
    entities = pd.DataFrame({"entity_id": [0, 1, 2], "freq_group": ["high", "low", None], "frequency": [7, 1, 3]})
    entities.to_parquet(root / "entities.parquet")
    return root, paths


def test_the_circuit_figures_are_the_five_known_ones():
    assert CIRCUIT_FIGURES == ["circuit_hits", "circuit_cross_group", "circuit_cross_group_training",
                               "circuit_transplant", "circuit_faithfulness"]
    assert tuple(FIGURES["circuit_transplant"].inputs) == ("hits", "transplant")


@pytest.mark.parametrize("name", CIRCUIT_FIGURES)
def test_circuit_figures_are_written_and_reproducible(seed_tables, name, tmp_path):
    root, paths = seed_tables
    settings = json.dumps({"seed": 0, "circuits": {"edge_budgets": [0.1, 30], "hit_k": 10},
                           "circuit_pairs": {"tasks": {t: f"{{name}} {t}" for t in TASKS}}})
    argv = ["figure", name, "--settings", settings, "--entities", str(root / "entities.parquet")]
    for table in FIGURES[name].inputs:
        argv += [f"--{table}", *map(str, paths[table])]
    assert_figure_drawn_twice_alike(argv, tmp_path)


def test_group_order_follows_frequency(seed_tables, tmp_path, monkeypatch):
    """Columns in ascending frequency (low before high although 'high' sorts first)."""
    from kcircuits.data.entities import group_order

    root, paths = seed_tables
    titles = []
    monkeypatch.setattr(cf, "finish", lambda plt, fig, *a: titles.extend(ax.get_title() for ax in fig.axes))
    cf.plot_hits(read_seed_tables(paths["hits"]), group_order(pd.read_parquet(root / "entities.parquet")),
                 TASKS, "zero", "0.1", 10, tmp_path / "h.pdf", tmp_path / "h.png")
    assert titles[:2] == ["low frequency", "high frequency"]


# ---- acquisition figures over seeds -------------------------------------------------------------------
def eval_summary(seed: int) -> pd.DataFrame:
    from kcircuits.figures.acquisition import acquisition_metrics

    metrics = [*acquisition_metrics(10), "base_first_token"]
    rows = []
    for o, (name, epoch, step) in enumerate(CKPTS):
        for metric in metrics:
            for target in ("current", "original"):
                for yi, etype in enumerate([*TYPES, "background"]):
                    for group in [*GROUPS, "all"]:
                        rows.append({**checkpoint_meta(seed, name, epoch, step), "order": o, "metric": metric,
                                     "target": target, "type": etype, "freq_group": group, "attribute": "all",
                                     "value": 0.1 * o + 0.05 * yi + 0.2 * seed, "n": 10, "chance": None})
    return pd.DataFrame(rows)


def test_acquisition_curves_are_seed_means_with_intervals(tmp_path, monkeypatch):
    from matplotlib.collections import PolyCollection

    from kcircuits.figures import acquisition

    summary = two_seeds(eval_summary)
    drawn = []
    real = acquisition.save_figure

    def keep(fig, pdf, png):
        drawn.append([(line.get_xdata().tolist(), line.get_ydata().tolist()) for line in fig.axes[0].lines]
                     + [sum(isinstance(c, PolyCollection) for c in fig.axes[0].collections)])
        real(fig, pdf, png)

    monkeypatch.setattr(acquisition, "save_figure", keep)
    acquisition.plot_acquisition(summary, GROUPS, 10, tmp_path / "a.pdf", tmp_path / "a.png")
    first = (tmp_path / "a.png").read_bytes()
    acquisition.plot_acquisition(summary, GROUPS, 10, tmp_path / "a.pdf", tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == first  # the bootstrap is seeded
    (x_new, y_new), (x_rev, y_rev) = drawn[0][:2]  # new, revised: mean over seeds 0 and 1 (+0.1)
    assert x_new == [0.0, 1.0, 2.0] and y_new == pytest.approx([0.1, 0.2, 0.3])
    assert y_rev == pytest.approx([0.15, 0.25, 0.35]) and drawn[0][-1] == 2  # one band per curve
    acquisition.plot_overwriting(summary, GROUPS, tmp_path / "o.pdf", tmp_path / "o.png")
    assert (tmp_path / "o.pdf").read_bytes()[:5] == b"%PDF-"


# ---- rules ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rules_plan_circuit_figures_over_every_seed(tmp_path):
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text("train:\n  seeds: [0, 1]\n  continual: {epochs: 1, lr: 1.0e-3}\n")
    figures = [f"results/tiny/figures/{name}.pdf" for name in [*CIRCUIT_FIGURES, "acquisition"]]
    proc = snakemake(tmp_path, *figures, "-n", configfiles=(TINY, seeds))
    counts = planned_jobs(proc)
    assert counts["circuit_summary"] == 2 and counts["eval_summary"] == 2
    for name in CIRCUIT_FIGURES:
        assert counts[f"figure_{name}"] == 1
    assert "seed-1/circuits/summary_hits.parquet" in proc.stdout


def test_cli_rows_are_the_configured_tasks_that_have_circuits(seed_tables, tmp_path, monkeypatch):
    from kcircuits.cli import main

    root, paths = seed_tables
    labels = []
    monkeypatch.setattr(cf, "finish", lambda plt, fig, *a: labels.extend(ax.get_ylabel() for ax in fig.axes))
    settings = json.dumps({"seed": 0, "circuits": {"edge_budgets": [30, 0.1], "hit_k": 5},
                           "circuit_pairs": {"tasks": {"major": "{name} majored in", "company": "{name} works for",
                                                       "city": "{name} lives in"}}})
    assert main(["figure", "circuit_hits", "--settings", settings, "--entities", str(root / "entities.parquet"),
                 "--hits", *map(str, paths["hits"]), "--pdf", str(tmp_path / "h.pdf"),
                 "--png", str(tmp_path / "h.png")]) == 0
    assert [lab for lab in labels if lab] == ["company\nHit@5", "city\nHit@5", f"{cf.ALL_TASKS}\nHit@5"]
