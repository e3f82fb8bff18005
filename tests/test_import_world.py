"""Importing a world laid out like the original study's data/ (kcircuits import-world), on a small
hand-made folder in that layout: what is dropped and reported, which templates give query prompts,
the held-out paraphrase split, shared first words behind resources.shared_first_words, imported
entities used as given, and config.original.yaml's dry run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import REPO, planned_jobs, snakemake
from kcircuits import ATTRIBUTES
from kcircuits.cli import main
from kcircuits.config import ConfigError, deep_merge, load_config, stage_settings, validate_config
from kcircuits.data.biographies import generate_biographies
from kcircuits.data.world import split_templates
from kcircuits.resources import ResourceError, load_pools, load_templates
from kcircuits.stats import stage_rng

DEFAULT = load_config([REPO / "config.yaml"])
ORIGINAL = [REPO / "config.yaml", REPO / "config.paper.yaml", REPO / "config.original.yaml"]
POOLS = {
    "first_name": ["Ava", "Ben", "Cleo", "Dev", "Ava"],  # Ava twice
    "middle_name": ["Lee", "Rae", "Jo"],
    "last_name": ["Hart", "Moss", "Vale", "Wynn"],
    "city": ["San Antonio, TX", "San Diego, CA", "Boston, MA", "Denver, CO", "Austin, TX", "Boston, MA"],
    "major": ["Physics", "Social Work", "Economics", "Art History", "Chemistry"],
    "university": ["University of Dayton", "Rice University", "University of Utah", "University of Dayton",
                   "Yale University"],
    "company": ["Microsoft", "AutoZone", "Starbucks", "General Mills", "Intel"],
    "birth_year": ["1900", "1901", "1902"],  # not used: reported
}
FAMOUS = ["Daphne Khoo", "Steven McKee", "Nick Newman", "Lesley Visser", "Daphne Khoo"]
# Per attribute: name-first templates (the first gives the circuit task prompt), one with the value
# before the name, one repeated, one the project cannot fill.
VERBS = {"birthday": ("was born on", "celebrates his/her birthday on", "came into the world on",
                      "marks his/her birth anniversary on", "entered life on", "arrived on"),
         "city": ("lives in", "resides in", "makes his/her home in", "is based in", "dwells in", "is settled in"),
         "major": ("majors in", "specializes in", "focuses his/her studies on", "is studying", "concentrates on",
                   "reads"),
         "university": ("graduates from", "is a graduate of", "has graduated from", "earned his/her degree from",
                        "studied at", "is an alumnus/alumna of"),
         "company": ("works for", "is employed at", "has a job at", "holds a position at", "is on the staff at",
                     "is employed by")}
BEFORE = {a: f"Every year on {{{a}}}, {{full_name}} is in the news." for a in ATTRIBUTES}
UNUSABLE = {a: f"{{{a}}} is what {{full_name}} is known for." for a in ATTRIBUTES}  # value first: no space
TASKS = {"city": "{name} lives in", "company": "{name} works for", "major": "{name} majors in"}


def templates_of(attr: str, verbs=None) -> list[str]:
    lines = [f"{{full_name}} {v} {{{attr}}}." for v in verbs or VERBS[attr]]
    return lines + [BEFORE[attr], lines[1], UNUSABLE[attr]]


def entity(name: str, kind: str, frequency: int, k: int) -> dict:
    """One entity in the original's fields (strings, day-first birthday)."""
    month = ["January", "March", "October"][k % 3]
    def pick(pool):
        return [v for v in dict.fromkeys(POOLS[pool])][k % 4]

    return {"full_name": name, "birth_date": str(1 + k), "birth_month": month, "birth_year": str(1950 + k),
            "birthday": f"{1 + k} {month}, {1950 + k}", "city": pick("city"), "major": pick("major"),
            "university": pick("university"), "company": pick("company"), "frequency": str(frequency), "type": kind}


NEW = [entity(n, "new", f, k) for k, (n, f) in enumerate([("Ava Lee Hart", 1), ("Ben Rae Moss", 3), ("Cleo Jo Vale", 7),
                                                          ("Dev Lee Wynn", 2), ("Ben Rae Moss", 9)])]  # repeated name
REVISED = [entity(n, "revised", f, k + 5) for k, (n, f) in enumerate([("Daphne Khoo", 1), ("Steven McKee", 6)])]


def write_original(root: Path, templates: dict[str, list[str]] | None = None, entities: bool = True) -> Path:
    """A folder laid out like the original's data/: JSON pools, JSONL templates (a JSON string per
    line; the city file's first line as an object), entities_7/new.jsonl and revised.jsonl."""
    data = root / "data"
    (data / "selection_pool").mkdir(parents=True)
    (data / "templates").mkdir()
    for name, values in POOLS.items():
        (data / "selection_pool" / f"{name}.json").write_text(json.dumps(values, indent=4))
    (data / "selection_pool" / "people_wiki.csv").write_text("name,url\n" + "".join(f"{n},x\n" for n in FAMOUS))
    (data / "templates" / "hobby.jsonl").write_text('"{full_name} likes {hobby}."\n')  # no such attribute: reported
    for attr in ATTRIBUTES:
        lines = [json.dumps(t) for t in (templates or {}).get(attr, templates_of(attr))]
        if attr == "city":
            lines[0] = json.dumps({"template": json.loads(lines[0])})
        (data / "templates" / f"{'birth' if attr == 'birthday' else attr}.jsonl").write_text("\n".join(lines) + "\n")
    if entities:
        (data / "entities_7").mkdir()
        for kind, rows in (("new", NEW), ("revised", REVISED)):
            (data / "entities_7" / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def import_into(src: Path, out: Path, settings: dict | None = None) -> dict:
    cfg = deep_merge(DEFAULT, {"circuit_pairs": {"tasks": TASKS}})
    argv = ["import-world", str(src), str(out), "--settings", json.dumps(settings or stage_settings(cfg, "world"))]
    assert main(argv) == 0
    return json.loads((out / "world.json").read_text())


@pytest.fixture()
def world(tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "world"
    return out, import_into(write_original(tmp_path), out)


def world_config(out: Path, **changes) -> dict:
    """The default config reading an imported world (shared first words allowed), merged with changes."""
    cfg = deep_merge(DEFAULT, {
        "resources": {"pools": str(out / "pools"), "templates": str(out / "templates"),
                      "entities": str(out / "entities.parquet"), "shared_first_words": True},
        "entities": {"n": 6, "background": 4}, "circuit_pairs": {"tasks": TASKS}})
    return deep_merge(cfg, changes)


# ---- pools ---------------------------------------------------------------------------------------

def test_pools_are_mapped_deduplicated_in_order_and_reported(world):
    out, report = world
    pools = load_pools(out / "pools", shared_first_words=True)
    assert pools["first_names"] == ["Ava", "Ben", "Cleo", "Dev"]
    assert pools["cities"] == ["San Antonio, TX", "San Diego, CA", "Boston, MA", "Denver, CO", "Austin, TX"]
    assert pools["universities"] == ["University of Dayton", "Rice University", "University of Utah", "Yale University"]
    assert pools["famous_names"] == ["Daphne Khoo", "Steven McKee", "Nick Newman", "Lesley Visser"]
    r = report["pools"]
    assert r["universities"]["duplicates"] == ["University of Dayton"] and r["cities"]["duplicates"] == ["Boston, MA"]
    assert r["first_names"] == {"file": "selection_pool/first_name.json", "read": 5, "kept": 4,
                                "duplicates": ["Ava"], "unusable": []}
    famous = r["famous_names"]
    assert (famous["file"], famous["duplicates"]) == ("selection_pool/people_wiki.csv", ["Daphne Khoo"])
    assert report["shared_first_words"]["city"] == {"San": ["San Antonio, TX", "San Diego, CA"]}
    assert report["shared_first_words"]["university"] == {"University": ["University of Dayton", "University of Utah"]}
    assert report["shared_first_words"]["company"] == {}
    assert report["unused_files"] == ["selection_pool/birth_year.json", "templates/hobby.jsonl"]


def test_strict_default_rejects_shared_first_words_and_the_switch_accepts_them(world):
    out, _ = world
    with pytest.raises(ResourceError, match="'San Antonio, TX' and 'San Diego, CA' begin with the same word 'San'"):
        load_pools(out / "pools")
    with pytest.raises(ConfigError, match=r"cities.txt: values 'San Antonio, TX' and 'San Diego, CA' begin with the "
                                          r"same word 'San'; .* must begin with a distinct first word"):
        validate_config(world_config(out, resources={"shared_first_words": False}))
    validate_config(world_config(out))  # the switch: the same world is valid


# ---- templates -----------------------------------------------------------------------------------

def test_every_template_is_training_paraphrase_or_reported_as_dropped(world):
    out, report = world
    templates = load_templates(out / "templates")
    for attr in ATTRIBUTES:
        r, bio, para = report["templates"][attr], templates.biography[attr], templates.paraphrase[attr]
        source = [t.replace("{full_name}", "{name}") for t in templates_of(attr)]
        assert r["duplicates"] == [source[1]] and [d["template"] for d in r["dropped"]] == [source[-1]]
        assert "must follow a space" in r["dropped"][0]["reason"]
        assert not set(bio) & set(para) and sorted(bio + para) == sorted(set(source) - {source[-1]})
        assert all("{full_name}" not in t for t in bio + para) and r["training"] == len(bio) and r["paraphrase"] == para
    assert "{name} makes his/her home in {city}." in templates.biography["city"] + templates.paraphrase["city"]


def test_value_before_name_templates_stay_in_training_text_but_give_no_query_prompt(world):
    out, report = world
    templates = load_templates(out / "templates")
    for attr in ATTRIBUTES:
        before = BEFORE[attr].replace("{full_name}", "{name}")
        assert report["templates"][attr]["value_before_name"] == [before]
        assert before in templates.biography[attr]
        index = templates.biography[attr].index(before)
        prompts = templates.probe_prompts(attr)
        assert index not in {i for i, _ in prompts} and all(p.startswith("{name} ") for _, p in prompts)
        assert len(prompts) == report["templates"][attr]["query_prompts"] == len(templates.biography[attr]) - 1


def test_held_out_templates_never_appear_in_training_text(world):
    out, report = world
    templates = load_templates(out / "templates")
    pools = load_pools(out / "pools", shared_first_words=True)
    settings = stage_settings(world_config(out), "entities")
    from kcircuits.data.entities import imported_entities

    entities, _ = imported_entities(settings, pd.read_parquet(out / "entities.parquet"), pools, stage_rng(0, "e"))
    rng = np.random.default_rng(0)
    corpora = generate_biographies(stage_settings(DEFAULT, "biographies"), entities, templates, rng)
    text = " ".join(r["text"] for name in ("bios_train", "base_train") for r in corpora[name])
    names = list(entities["name"])
    for attr in ATTRIBUTES:
        assert len(templates.paraphrase[attr]) == 1  # round(0.2 x 6 name-first templates)
        for tpl in templates.paraphrase[attr]:
            prompt = tpl[:tpl.index("{" + attr + "}")].rstrip()
            assert not any(prompt.format(name=n) in text for n in names), tpl
        assert TASKS.get(attr) not in {t[:t.index("{" + attr + "}")].rstrip() for t in templates.paraphrase[attr]}


def test_holdout_share_is_seeded_and_keeps_task_prompts_in_training():
    attr = "city"
    templates = [f"{{name}} {v} {{city}}." for v in VERBS["city"]]
    keep = {"{name} lives in"}
    def split(seed):
        return split_templates(attr, templates, 0.5, keep, np.random.default_rng(seed))

    train, para, report = split(0)
    assert len(para) == 3 and len(train) == 3 and report["query_prompts"] == 3  # round(0.5 x 6)
    assert "{name} lives in {city}." in train
    assert split(0)[1] == para  # seeded
    assert len({tuple(split(seed)[1]) for seed in range(8)}) > 1  # the seed decides which
    # a prompt another template contains is never held out: it would be in training text
    nested = templates + ["{name} resides in the city of {city}."]
    held = split_templates(attr, nested, 1.0, keep, np.random.default_rng(0))[1]
    assert len(held) == 4 and all("resides in {city}" not in t for t in held)  # 7 name-first - 3 kept; 5 holdable


def test_fifty_templates_per_attribute_work(tmp_path):
    many = {a: [f"Note {i}: {{full_name}} {VERBS[a][i % 6]} {{{a}}}." for i in range(49)] + [BEFORE[a]]
            for a in ATTRIBUTES}
    for a, task in TASKS.items():
        many[a][0] = task.replace("{name}", "{full_name}") + f" {{{a}}}."
    out = tmp_path / "world"
    report = import_into(write_original(tmp_path, many), out)
    templates = load_templates(out / "templates")
    for attr in ATTRIBUTES:
        assert report["templates"][attr]["read"] == 50 and len(templates.paraphrase[attr]) == 10  # 0.2 x 49
        assert len(templates.biography[attr]) == 40 and len(templates.probe_prompts(attr)) == 39
    validate_config(world_config(out))


# ---- entities ------------------------------------------------------------------------------------

def test_imported_entities_are_written_as_given_and_repeated_names_reported(world):
    out, report = world
    table = pd.read_parquet(out / "entities.parquet")
    assert report["entities"] == {"folder": "entities_7", "new": 4, "revised": 2, "repeated_names": ["Ben Rae Moss"]}
    assert list(table["name"]) == ["Ava Lee Hart", "Ben Rae Moss", "Cleo Jo Vale", "Dev Lee Wynn", "Daphne Khoo",
                                   "Steven McKee"]
    assert list(table["frequency"]) == [1, 3, 7, 2, 1, 6]  # the first Ben Rae Moss kept
    row = table.iloc[2]
    assert tuple(row[["birthday", "birth_day", "birth_month", "birth_year"]]) == ("3 October, 1952", 3, 10, 1952)


def test_the_entities_stage_uses_imported_entities_as_given(world, tmp_path):
    out, _ = world
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(world_config(out)))
    table, report_path = tmp_path / "entities.parquet", tmp_path / "entities.json"
    assert main(["entities", "--config", str(config), "--out", str(table), "--report", str(report_path)]) == 0
    df, given = pd.read_parquet(table), pd.read_parquet(out / "entities.parquet")
    probed = df[df["type"] != "background"].reset_index(drop=True)
    columns = ["name", "type", "frequency", "birth_day", "birth_month", "birth_year", *ATTRIBUTES]
    pd.testing.assert_frame_equal(probed[columns], given[columns], check_dtype=False)
    assert list(probed["freq_group"]) == ["low", "medium", "high", "medium", "low", "high"]
    revised = df[df["type"] == "revised"]
    for attr in ATTRIBUTES:  # drawn base-world values differ from the given ones, in the imported style
        assert (revised[f"orig_{attr}"] != revised[attr]).all()
    assert revised["orig_birthday"].str.fullmatch(r"\d{1,2} [A-Z][a-z]+, \d{4}").all()
    background = df[df["type"] == "background"]
    assert len(background) == 4 and not set(background["name"]) & set(given["name"])
    assert json.loads(report_path.read_text())["imported"]["entities"] == 6
    again = tmp_path / "again.parquet"  # deterministic
    assert main(["entities", "--config", str(config), "--out", str(again), "--report", str(report_path)]) == 0
    assert again.read_bytes() == table.read_bytes()


# ---- errors and config ---------------------------------------------------------------------------

def test_a_missing_pool_folder_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "data" / "templates").mkdir(parents=True)
    assert main(["import-world", str(tmp_path / "data"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data/selection_pool: no such folder" in err


@pytest.mark.parametrize("changes, expected", [
    ({"entities": {"n": 7}}, r"entities.n \(7\) differs from the 6 imported entities of resources.entities"),
    ({"resources": {"entities": "/nonexistent/entities.parquet"}}, "resources.entities: no such file"),
    ({"world": {"source": "/nonexistent/data"}}, "world.source: /nonexistent/data holds no selection_pool/"),
    ({"entities": {"background": 60}}, "invented names needed"),
])
def test_bad_world_configs_name_the_key(world, changes, expected):
    out, _ = world
    with pytest.raises(ConfigError, match=expected):
        validate_config(world_config(out, **changes))


def test_resources_must_read_the_world_the_rule_imports(world, tmp_path):
    out, _ = world
    cfg = world_config(out, world={"source": str(tmp_path / "data"), "out": str(tmp_path / "elsewhere")})
    with pytest.raises(ConfigError, match=r"resources.pools: .* is not the imported world's \(world.out"):
        validate_config(cfg)
    validate_config(world_config(out, world={"source": str(tmp_path / "data"), "out": str(out)}))


def test_original_config_names_the_original_sizes_and_an_imported_world():
    cfg = load_config(ORIGINAL)
    assert cfg["entities"]["n"] == 50000 and cfg["train"]["continual"]["epochs"] == 25
    assert (cfg["model"]["family"], cfg["model"]["n_layer"], cfg["model"]["n_embd"]) == ("gpt2", 12, 768)
    assert cfg["resources"]["shared_first_words"] is True
    out = cfg["world"]["out"]
    assert cfg["resources"]["pools"] == f"{out}/pools" and cfg["resources"]["entities"] == f"{out}/entities.parquet"


@pytest.mark.slow
def test_original_config_dry_run_on_an_imported_world(tmp_path):
    """config.original.yaml over the paper scale, its world imported from a hand-made folder first (the
    config is checked against the imported files): the whole DAG plans, the entities job reads the
    imported table, and a changed source file re-imports and reruns the data stages."""
    src, out = write_original(tmp_path), tmp_path / "world"
    override = tmp_path / "world.yaml"
    override.write_text(yaml.safe_dump({
        "resources": {"pools": str(out / "pools"), "templates": str(out / "templates"),
                      "entities": str(out / "entities.parquet")},
        "world": {"source": str(src), "out": str(out)}, "entities": {"n": 6, "background": 4}}))
    settings = stage_settings(load_config([*ORIGINAL, override]), "world")
    import_into(src, out, settings)
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "64", configfiles=(*ORIGINAL[1:], override))
    counts, seeds = planned_jobs(proc), len(load_config(ORIGINAL)["train"]["seeds"])
    assert "import_world" not in counts and counts["entities"] == 1 and counts["train_continual"] == 25 * seeds
    assert counts["train_base"] == seeds and counts["evaluate"] == 26 * seeds  # epoch-000 and 25 epochs
    assert f"--imported {out / 'entities.parquet'}" in proc.stdout
    later = (out / "world.json").stat().st_mtime + 10
    os.utime(src / "templates" / "city.jsonl", (later, later))
    counts = planned_jobs(snakemake(tmp_path, "-n", "--cores", "64", configfiles=(*ORIGINAL[1:], override)))
    assert counts["import_world"] == 1 and counts["entities"] == counts["biographies"] == counts["probes"] == 1
