"""Configuration: the shipped config validates; mistakes name the key and the fix; the schema is
the one definition of every setting, and resolving gives every key of it."""

import argparse
import copy
import dataclasses

import pytest
import yaml

from coclr import config, synthetic

SHIPPED = yaml.safe_load(config.DEFAULT_CONFIG.read_text())


def shipped(**top) -> dict:
    """A fresh copy of config.yaml as written (validate fills defaults in place)."""
    return {**copy.deepcopy(SHIPPED), **top}


def problems(cfg) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    return str(err.value)


def leaves(spec, prefix=()):
    """(key path, schema node) of every setting under ``spec``; a nested section yields its keys."""
    for key, child in config.spec_of(spec).get("properties", {}).items():
        child = config.spec_of(child)
        if "properties" in child:
            yield from leaves(child, (*prefix, key))
        else:
            yield (*prefix, key), child


def lookup(settings, path):
    for key in path:
        settings = settings[key]
    return settings


def test_shipped_config_is_valid():
    config.validate(shipped())


def test_unknown_key_is_named_with_a_suggestion():
    cfg = shipped()
    cfg["frames"]["jpeg_qualty"] = 80
    message = problems(cfg)
    assert "frames.jpeg_qualty" in message and "did you mean `jpeg_quality`" in message


def test_wrong_type_and_missing_key_are_named():
    cfg = shipped()
    cfg["presets"]["cpu"]["moco"]["momentum"] = "fast"
    del cfg["preset"]
    del cfg["datasets"]["ucf101"]["format"]
    message = problems(cfg)
    assert "presets.cpu.moco.momentum" in message
    assert "key `preset` is missing" in message and "key `datasets.ucf101.format` is missing" in message


def test_a_typo_in_a_datasets_overrides_is_rejected_and_named():
    cfg = shipped()
    cfg["datasets"]["k400"]["overrides"]["moco"] = {"queue_sise": 16384}
    cfg["datasets"]["k400"]["overrides"]["cotrain"]["cycles"] = "one"
    message = problems(cfg)
    assert "unknown key `datasets.k400.overrides.moco.queue_sise` (did you mean `queue_size`?)" in message
    assert "datasets.k400.overrides.cotrain.cycles" in message


def test_unknown_preset_or_dataset_is_reported():
    assert "`preset`: 'gpu' is not one of the configured presets" in problems(shipped(preset="gpu"))


def test_missing_dataset_root_names_the_key(tmp_path):
    cfg = shipped()
    cfg["datasets"]["ucf101"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match=r"datasets\.ucf101\.root.*does not exist"):
        config.check_dataset_paths(cfg, "ucf101")
    config.check_dataset_paths(cfg, "synthetic")  # generated: nothing to check


def test_dataset_overrides_merge_over_the_preset_and_get_no_defaults():
    for preset, topk in (("paper", 5), ("cpu", 20)):
        cfg = shipped(preset=preset)
        config.validate(cfg)
        k400 = config.resolve(cfg, "k400")
        assert k400["cotrain"]["cycles"] == 1 and k400["cotrain"]["epochs"] == 50 and k400["cotrain"]["lr_steps"] == [40]
        assert k400["moco"]["queue_size"] == 16384
        assert k400["cotrain"]["topk"] == topk  # the preset's: the overrides name only what they change
        assert cfg["datasets"]["k400"]["overrides"] == SHIPPED["datasets"]["k400"]["overrides"]
        assert config.resolve(cfg, "ucf101")["cotrain"]["cycles"] == 2


def test_every_setting_has_a_description_and_a_default():
    root = config.schema()
    sections = [(("presets", "<name>"), root["$defs"]["preset"])] + [((key,), root["properties"][key])
                                                                     for key in config.SECTIONS]
    keys = [(prefix + path, spec) for prefix, section in sections for path, spec in leaves(section)]
    assert len(keys) > 50
    undescribed = [".".join(path) for path, spec in keys if not spec.get("description")]
    without_default = [".".join(path) for path, spec in keys if "default" not in spec]
    assert not undescribed and not without_default
    data = [path for path, spec in leaves(root["$defs"]["dataset"]) if not spec.get("description")]
    assert not data, f"dataset keys without a description: {data}"


def test_resolved_settings_hold_every_key_of_the_schema():
    root = config.schema()
    for preset in ("paper", "cpu"):
        cfg = shipped(preset=preset)
        config.validate(cfg)
        for dataset in cfg["datasets"]:
            settings = config.resolve(cfg, dataset)
            for path, _ in leaves(root["$defs"]["preset"]):
                lookup(settings, path)  # KeyError names the key a fallback would have hidden
        for key in config.SECTIONS:
            for path, _ in leaves(root["properties"][key]):
                lookup(cfg[key], path)


def test_the_presets_resolve_to_the_paper_recipe_and_the_cpu_departures():
    cfg = shipped(preset="paper")
    config.validate(cfg)
    paper = config.resolve(cfg, "ucf101")
    assert paper == {
        "model": {"width": 1.0, "depth": 5, "flow_channels": 2},
        "clip": {"frames": 32, "stride": 1, "size": 128, "crop_area": [0.2, 1.0], "eval_stride": 15,
                 "eval_pooling": "normalised_mean", "flip_negates_flow_x": True, "colour_views": "reference",
                 "one_window": 0.5, "flow_colour": True, "grey": "channel", "crop": "reference",
                 "interpolation": "bicubic"},
        "moco": {"queue_size": 2048, "momentum": 0.999, "temperature": 0.07, "dim": 128},
        "optim": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 32},
        "infonce": {"epochs": 300, "lr_steps": [250, 280]},
        "ubernce": {"epochs": 300, "lr_steps": [250, 280]},
        "cotrain": {"cycles": 2, "epochs": 100, "lr_steps": [80], "topk": 5, "self_drop": 0.9},
        "knn_monitor": {"every": 10, "bank_videos": 1000, "query_videos": 500},
        "linear_probe": {"epochs": 100, "lr": [1e-3, 1e-2], "weight_decay": [1e-5, 1e-3], "batch_size": 64,
                         "holdout": 0.1},
        "finetune": {"epochs": 500, "lr_steps": [400, 450], "lr": 1e-3, "weight_decay": 1e-3, "ten_crop": True,
                     "dropout": 0.9, "batch_size": 32, "holdout": 0.1},
    }
    cfg = shipped(preset="cpu")
    config.validate(cfg)
    cpu = config.resolve(cfg, "synthetic")
    departures = {"model": {"width": 0.5, "depth": 3},
                  "clip": {"frames": 8, "size": 32, "crop_area": [0.5, 1.0], "eval_stride": 4, "colour_views": "every",
                           "one_window": 0, "flow_colour": False, "grey": "luma", "crop": "inception",
                           "interpolation": "bilinear"},
                  "moco": {"queue_size": 512, "momentum": 0.99}, "infonce": {"epochs": 20, "lr_steps": []},
                  "ubernce": {"epochs": 40, "lr_steps": []}, "cotrain": {"epochs": 10, "lr_steps": [], "topk": 20},
                  "knn_monitor": {"every": 5, "bank_videos": 200}, "linear_probe": {"epochs": 50},
                  "finetune": {"epochs": 10, "lr_steps": [], "weight_decay": 1e-5, "ten_crop": False}}
    assert cpu == config.deep_merge(paper, departures)
    assert {key: cfg[key] for key in config.SECTIONS} == {
        "ingest": {"videos_per_shard": 250, "workers": 2, "test_fraction": 0.3},
        "frames": {"fps": None, "short_side": None, "jpeg_quality": 90, "strict": False},
        "flow": {"method": "auto", "device": "cpu", "batch_size": "auto", "compile": "auto",
                 "compile_cache": ".cache/torchinductor", "params": {}},
        "resources": {"gpus": 0, "threads": 1, "workers": 0, "checkpoint_minutes": 10, "jpeg_decode": "loader",
                      "stop_margin_minutes": 3, "gpu_model": None, "gpu_partition": None,
                      "memory_cache_mib": 1024},
    }


def test_defaults_are_copies_not_shared_between_presets():
    cfg = shipped()
    cfg["presets"]["other"] = {}
    config.validate(cfg)
    cfg["presets"]["paper"]["infonce"]["lr_steps"].append(290)
    assert cfg["presets"]["other"]["infonce"]["lr_steps"] == [250, 280]
    assert config.schema()["$defs"]["schedule"]["properties"]["lr_steps"]["default"] == [250, 280]


def test_complete_settings_fill_the_rest_and_reject_typos():
    settings = config.complete_settings({"clip": {"frames": 8}, "resources": {"threads": 2}})
    assert settings["clip"]["frames"] == 8 and settings["clip"]["eval_stride"] == 15
    assert settings["resources"] == {"gpus": 0, "threads": 2, "workers": 0, "checkpoint_minutes": 10,
                                     "jpeg_decode": "loader", "stop_margin_minutes": 3, "gpu_model": None,
                                     "gpu_partition": None, "memory_cache_mib": 1024}
    with pytest.raises(config.ConfigError, match=r"unknown key `clip.strde` \(did you mean `stride`\?\)"):
        config.complete_settings({"clip": {"strde": 2}})


def test_settings_doc_is_rendered_from_the_schema():
    assert config.SETTINGS_DOC.read_text() == config.settings_markdown(), (
        "docs/settings.md is out of date: python -c 'from coclr import config; "
        "config.SETTINGS_DOC.write_text(config.settings_markdown())'")


def test_the_generators_parameters_default_in_the_schema_for_synthetic_datasets_only():
    cfg = shipped()
    cfg["datasets"]["partial"] = {"format": "synthetic", "generate": {"classes": 3, "seed": 5}}
    cfg["datasets"]["bare"] = {"format": "synthetic"}
    config.validate(cfg)
    defaults = config.generator_defaults()
    assert set(defaults) == {f.name for f in dataclasses.fields(synthetic.Config)}
    assert cfg["datasets"]["partial"]["generate"] == {**defaults, "classes": 3, "seed": 5}
    assert cfg["datasets"]["bare"]["generate"] == defaults
    assert "generate" not in cfg["datasets"]["ucf101"]
    assert synthetic.design(seed=5) == synthetic.Config(**{**defaults, "seed": 5})
    parser = argparse.ArgumentParser()
    synthetic.add_arguments(parser)
    by_hand = parser.parse_args(["--out", "x"])  # `python -m coclr synthesize` takes the same defaults
    assert {key: getattr(by_hand, key) for key in defaults} == defaults
