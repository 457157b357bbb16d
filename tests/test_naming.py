"""Names of models and results, and the CoCLR cycle schedule (coclr/naming.py)."""

import re

import pytest

from coclr import naming


def test_model_names_parse_back_including_two_stream():
    for method in naming.methods(range(1, 3)):
        for view in naming.RESULT_VIEWS:
            assert naming.parse_model_name(naming.model_name(method, view)) == (method, view)
    assert naming.parse_model_name("coclr_c2_two_stream") == ("coclr_c2", "two_stream")
    for bad in ("rgb", "coclr_c2", "coclr_c2_depth", "_flow"):
        with pytest.raises(ValueError, match="not a model name"):
            naming.parse_model_name(bad)


def test_methods_in_ablation_order_and_cycles():
    assert naming.methods(range(1, 3)) == ["random", "infonce", "coclr_c1", "coclr_c2", "ubernce"]
    assert [naming.cycle_of(m) for m in naming.methods(range(1, 3))] == [None, None, 1, 2, None]


def test_other_view():
    assert naming.other("rgb") == "flow" and naming.other("flow") == "rgb"
    with pytest.raises(ValueError, match="view must be one of"):
        naming.other("two_stream")


def test_cycle_schedule_alternates_rgb_then_flow():
    """Each cycle trains RGB mined by the previous flow model, then flow mined by the RGB model just trained."""
    schedule = {(c, v): naming.stage_models(c, v) for c in (1, 2) for v in naming.VIEWS}
    assert schedule == {
        (1, "rgb"): {"init": "infonce_rgb", "miner": "infonce_flow"},
        (1, "flow"): {"init": "infonce_flow", "miner": "coclr_c1_rgb"},
        (2, "rgb"): {"init": "coclr_c1_rgb", "miner": "coclr_c1_flow"},
        (2, "flow"): {"init": "coclr_c1_flow", "miner": "coclr_c2_rgb"},
    }


def test_seed_folders_keep_seed_zero_where_it_was():
    """Seed 0 has no folder (a single-seed run keeps today's paths); seed N has `seedN/`, read back from a path."""
    assert naming.seed_dir(0) == "" and naming.seed_dir(3) == "seed3/"
    assert naming.seeded("infonce_rgb", 0) == "infonce_rgb" and naming.seeded("infonce_rgb", 12) == "seed12/infonce_rgb"
    for seed in (0, 1, 12):
        assert naming.seed_of(naming.seed_dir(seed)) == seed
        assert re.fullmatch(naming.SEED_DIR_PATTERN, naming.seed_dir(seed))
        assert naming.seed_of_path(f"runs/ucf101/{naming.seeded('coclr_c1_rgb', seed)}") == seed
    assert naming.seed_of_path("runs/seed5data/infonce_rgb") == 0  # a dataset's name is not a seed folder
    for bad in ("seed0/", "seed", "seeds1/", "1/"):
        assert not re.fullmatch(naming.SEED_DIR_PATTERN, bad)
        with pytest.raises(ValueError, match="not a seed folder"):
            naming.seed_of(bad)
    with pytest.raises(ValueError, match="non-negative"):
        naming.seed_dir(-1)
