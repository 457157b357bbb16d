"""Configuration: the shipped config validates; mistakes name the key and the fix."""

import copy

import pytest
import yaml

from coclr import config

SHIPPED = yaml.safe_load(config.DEFAULT_CONFIG.read_text())


def problems(cfg) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    return str(err.value)


def test_shipped_config_is_valid():
    config.validate(SHIPPED)


def test_unknown_key_is_named_with_a_suggestion():
    cfg = copy.deepcopy(SHIPPED)
    cfg["frames"]["jpeg_qualty"] = 80
    message = problems(cfg)
    assert "frames.jpeg_qualty" in message and "did you mean `jpeg_quality`" in message


def test_wrong_type_and_missing_key_are_named():
    cfg = copy.deepcopy(SHIPPED)
    cfg["presets"]["cpu"]["optim"]["lr"] = "fast"
    del cfg["presets"]["paper"]["model"]["width"]
    message = problems(cfg)
    assert "presets.cpu.optim.lr" in message
    assert "presets.paper.model.width" in message and "missing" in message


def test_unknown_preset_or_dataset_is_reported():
    cfg = copy.deepcopy(SHIPPED)
    cfg["preset"] = "gpu"
    assert "`preset`: 'gpu' is not one of the configured presets" in problems(cfg)


def test_missing_dataset_root_names_the_key(tmp_path):
    cfg = copy.deepcopy(SHIPPED)
    cfg["datasets"]["ucf101"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match=r"datasets\.ucf101\.root.*does not exist"):
        config.check_dataset_paths(cfg, "ucf101")
    config.check_dataset_paths(cfg, "synthetic")  # generated: nothing to check


def test_dataset_overrides_merge_over_the_preset():
    cfg = copy.deepcopy(SHIPPED)
    cfg["preset"] = "paper"
    k400 = config.resolve(cfg, "k400")
    assert k400["cotrain"]["cycles"] == 1 and k400["cotrain"]["epochs"] == 50
    assert k400["moco"]["queue_size"] == 16384
    assert k400["cotrain"]["topk"] == cfg["presets"]["paper"]["cotrain"]["topk"]  # untouched keys stay
    assert config.resolve(cfg, "ucf101")["cotrain"]["cycles"] == 2


def test_paper_preset_holds_the_reference_hyperparameters():
    paper = SHIPPED["presets"]["paper"]
    assert paper["moco"] == {"queue_size": 2048, "momentum": 0.999, "temperature": 0.07, "dim": 128}
    assert paper["optim"]["lr"] == 1e-3 and paper["optim"]["weight_decay"] == 1e-5
    assert paper["clip"]["frames"] == 32 and paper["clip"]["size"] == 128
    assert paper["cotrain"]["topk"] == 5 and paper["cotrain"]["cycles"] == 2
