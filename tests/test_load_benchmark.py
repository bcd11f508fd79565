"""`benchmarks/load.py`: the shipped FlanT5 configs give the published sizes, the memory table
counts them at the model types' precisions, and a load above the cap is stopped and reported."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import load  # noqa: E402

# FlanT5 parameter counts, as published with the models (google/flan-t5-xl: 2,849,757,184;
# google/flan-t5-xxl: 11,135,332,352)
FLAN_T5_PARAMS = {"xl": 2_849_757_184, "xxl": 11_135_332_352}


@pytest.fixture(scope="module")
def estimates():
    return load.estimates()


@pytest.mark.parametrize("size", ["xl", "xxl"])
def test_estimates_count_t5_at_its_precision(estimates, size):
    gib = load.GIB
    assert estimates[size]["bf16"]["weights_gib"]["t5_model"] * gib == 2 * FLAN_T5_PARAMS[size]
    assert estimates[size]["fp32"]["weights_gib"]["t5_model"] * gib == 4 * FLAN_T5_PARAMS[size]
    # the same EVA ViT-g and Q-Former at both sizes; the ViT's linear layers in fp16
    vit = estimates[size]["bf16"]["weights_gib"]["visual_encoder"] * gib
    assert 2 * 0.98e9 < vit < 2 * 1.02e9  # about 1.0 B parameters, nearly all in fp16


def test_estimates_table_marks_what_is_computed(estimates):
    text = load.estimates_table(estimates)
    assert "`pretrain_flant5xxl` / `regionvlm_flant5xxl` | bf16 | 23.3" in text
    assert "(no lean load measured)" in text  # nothing measured: no invented load figure
    measured = [{"size": "xl", "load": "ours lean", "status": "ok", "peak_gib": 9.0,
                 "weights": {"total": int(7.5 * load.GIB)}}]
    est = load.estimates(measured)
    text = load.estimates_table(est)
    assert "| 9.0 (measured, lean) |" in text
    xxl = est["xxl"]["bf16"]["weights_gib"]["total"] * 9.0 / 7.5
    assert f"| {xxl:.1f} (computed: xl's lean peak / weights) |" in text


def test_a_load_above_the_cap_is_stopped_and_reported(tmp_path):
    if load.mem_available_gib() < 0.2 + load.MARGIN_GIB:
        pytest.skip("not enough free memory to start the child")
    paths = {"vit_weights": "x", "bert": "x", "t5_model": "x", "stage1": "x", "stage2": "x", "regionvlm": "x"}
    row = load.run_load("ours lean", "large", paths, tmp_path, cap_gib=0.2, threads=1)  # imports alone pass 0.2 GiB
    assert row["status"] == "exceeded the cap"
    assert row["peak_gib"] > 0.2
    assert "> 0.2 (killed at" in load.table([row], "test machine")
