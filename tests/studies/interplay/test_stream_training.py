"""Stream runs (knowledge order, forgetting): the blocks reach the model in the stream's order, and
the checkpoint schedule is dense early."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import V, micro_settings, random_model
from kcircuits.train.corpus import BlockDataset, pack_paragraphs
from kcircuits.train.schedule import stream_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_schedule_follows_the_gaps_then_every_k_and_ends_at_the_last_step():
    assert stream_steps(64, [1, 2, 4, 8, 16], 16) == [1, 3, 7, 15, 31, 47, 63, 64]
    assert stream_steps(20, [1, 2, 4, 8, 16], 16) == [1, 3, 7, 15, 20]
    assert stream_steps(3, [1, 2, 4], 0) == [1, 3]
    with pytest.raises(ValueError):
        stream_steps(0, [1], 1)


def test_an_eos_filled_stream_packs_in_order_and_never_wraps_its_start_to_its_end():
    paragraphs = [[10 + i] * 3 for i in range(7)]  # 4 tokens each with end-of-text
    blocks, _ = pack_paragraphs(paragraphs, 8, eos_id=0, fill="eos")
    assert blocks.tolist()[-1] == [16, 16, 16, 0, 0, 0, 0, 0]
    firsts = [t for t in blocks.ravel().tolist() if t]
    assert firsts == sorted(firsts)  # the stream's order, nothing from its start at its end
    wrapped, _ = pack_paragraphs(paragraphs, 8, eos_id=0)
    assert wrapped.tolist()[-1][4:7] == [10, 10, 10]  # the default completes from the start


def seen_order(tmp_path, ordered: bool, grad_accum: int = 1) -> list[int]:
    """Train one pass over 24 blocks whose first token is their index; the first tokens of the rows
    reaching the model's forward, in the order they arrive."""
    from kcircuits.train.trainer import run_training

    model = random_model(d=16)
    arrived: list[int] = []
    model.register_forward_pre_hook(lambda m, a, kw: arrived.extend(kw["input_ids"][:, 0].tolist()),
                                    with_kwargs=True)
    blocks = np.tile(np.arange(24)[:, None] % V, (1, 8))  # [24, 8]
    settings = micro_settings(train={"batch_size": 4, "grad_accum": grad_accum})
    run_training(model, BlockDataset(blocks), settings, {"device": "cpu"}, tmp_path / "scratch", 1e-3, epochs=1,
                 threads=1, ordered=ordered)
    return arrived


def test_the_blocks_reach_the_model_in_the_stream_order(tmp_path):
    assert seen_order(tmp_path / "a", ordered=True) == list(range(24))
    assert seen_order(tmp_path / "b", ordered=True, grad_accum=3) == list(range(24))
    shuffled = seen_order(tmp_path / "c", ordered=False)  # the Trainer's default: this test can fail
    assert sorted(shuffled) == list(range(24)) and shuffled != list(range(24))
