"""Shared fixtures: real Snakemake runs of the tiny test config in temporary folders; the `slow` guard;
one torch thread for the random-model modules. Plain helpers are in helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import helpers
from helpers import REPO, SMALL_WORLD, TINY_DATA_TARGETS, snakemake

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
SNAKEMAKE_FIXTURES = {"tiny_data"}  # fixtures below that run Snakemake: every test using one is slow


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """`slow` marks exactly the tests that run Snakemake, directly or through a fixture: refuse the others."""
    slow = item.get_closest_marker("slow") is not None
    helpers.allow_snakemake(slow)
    if not slow and SNAKEMAKE_FIXTURES & set(item.fixturenames):
        pytest.fail(f"uses {sorted(SNAKEMAKE_FIXTURES & set(item.fixturenames))}, which runs Snakemake: "
                    "mark it @pytest.mark.slow", pytrace=False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The data folder of a complete tiny run (all data stages, real Snakemake)."""
    work = tmp_path_factory.mktemp("tiny")
    snakemake(work, *TINY_DATA_TARGETS)
    return work / "results" / "tiny" / "data"


@pytest.fixture(scope="session")
def pools() -> dict:
    """The shipped pools (resources/pools)."""
    from kcircuits.resources import load_pools

    return load_pools(REPO / "resources" / "pools")


@pytest.fixture(scope="session")
def templates():
    """The shipped templates (resources/templates)."""
    from kcircuits.resources import load_templates

    return load_templates(REPO / "resources" / "templates")


@pytest.fixture(scope="session")
def small_world(pools):
    """The entity table of helpers.SMALL_WORLD (seeded)."""
    from kcircuits.data.entities import generate_entities
    from kcircuits.stats import stage_rng

    return generate_entities(SMALL_WORLD, pools, stage_rng(0, "x"))[0]


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module (the machine is shared); `pytestmark = usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
