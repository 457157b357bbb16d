"""The preflight (`coclr check`): it passes a good configuration and names each problem's key."""

import pandas as pd
import pytest
import yaml

from coclr.check import check, merged_config
from coclr.cli import main

CLASSES = ["Biking", "Phoning", "Diving", "Rowing"]


def manifest(tmp_path, frames=40, fps=25.0, train_per_class=2, test_per_class=1, untested=()):
    """A manifest as ingest writes it: 160x120 videos, one row per video."""
    rows = []
    for label, name in enumerate(CLASSES):
        for split, count in (("train", train_per_class), ("test", 0 if name in untested else test_per_class)):
            for i in range(count):
                rows.append(dict(video_id=f"{name}/v_{split}_{i}.avi", path=f"/v/{name}_{split}_{i}.avi", label=label,
                                 class_name=name, split=split, group=f"{name}_{split}_{i}", num_frames=frames,
                                 fps=fps, width=160, height=120, shard=0))
    path = tmp_path / "manifest.csv"
    table = pd.DataFrame(rows)
    if callable(frames):
        table["num_frames"] = [frames(i) for i in range(len(table))]
    if callable(fps):
        table["fps"] = [fps(i) for i in range(len(table))]
    table.to_csv(path, index=False)
    return path


def paper_file(tmp_path, **overrides):
    """The paper preset on an 8-video training split, shrunk as the end-to-end test shrinks it."""
    (tmp_path / "videos").mkdir(exist_ok=True)
    shrunk = {"moco": {"queue_size": 4}, "optim": {"batch_size": 4}, "cotrain": {"epochs": 10},
              "linear_probe": {"batch_size": 8}, "finetune": {"batch_size": 4}}
    for section, values in overrides.pop("preset", {}).items():
        shrunk.setdefault(section, {}).update(values)
    config = {"dataset": "ucf101", "preset": "paper", "frames": {"short_side": 128},
              "datasets": {"ucf101": {"format": "ucf101", "root": str(tmp_path / "videos"),
                                      "splits_dir": str(tmp_path / "videos"), "overrides": shrunk}}, **overrides}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def findings(tmp_path, cuda=(False, 0), manifest_path=None, pretraining=True, node_cpus=None, **overrides):
    config = merged_config([paper_file(tmp_path, **overrides)])
    return check(config, manifest_path=manifest_path or manifest(tmp_path), cuda=cuda, pretraining=pretraining,
                 node_cpus=node_cpus)


def test_a_good_configuration_passes_and_reports_the_run(tmp_path):
    report = findings(tmp_path)
    assert report.problems == []
    text = report.text()
    assert "videos: 8 train, 4 test, 4 classes" in text
    assert "2 steps per epoch" in text and "shortest video: 40 frames" in text
    assert "disk: frames" in text and "time frames" in text and "time flow" in text
    assert report.warnings == [] and text.endswith("preflight: ok, 0 warning(s)")


def test_stage_times_come_from_the_rates(tmp_path):
    from coclr.check import cost_rates
    rates = {**cost_rates()[0], "train_clips_per_s_paper_cpu": 1.0, "flow_pairs_per_s_per_core": 1.0}
    config = merged_config([paper_file(tmp_path)])
    text = check(config, manifest_path=manifest(tmp_path), cuda=(False, 0), rates=rates).text()
    assert "time flow: 0.13 h on one CPU job" in text  # 12 videos x 39 frame pairs at 1 pair/s
    # 8 clips an epoch, 10 epochs, a CoCLR step 1.25 times an InfoNCE step, at 1 clip/s
    assert "time coclr stage (each of 2 x cycles): 0.03 h on CPU" in text
    assert "time infonce (each view): 0.67 h on CPU" in text  # 300 epochs x 8 clips


def test_the_command_merges_config_files_as_snakemake_and_exits_zero(tmp_path, capsys):
    main(["check", "--configfile", str(paper_file(tmp_path)), "--manifest", str(manifest(tmp_path)),
          "--out", str(tmp_path / "preflight.json")])
    assert "preflight: ok" in capsys.readouterr().out
    assert (tmp_path / "preflight.json").exists()


def test_the_command_refuses_with_the_key_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["check", "--configfile", str(paper_file(tmp_path, preset={"optim": {"batch_size": 16}})),
              "--manifest", str(manifest(tmp_path))])
    assert stop.value.code == 1
    assert "optim.batch_size" in capsys.readouterr().out


def test_a_bad_key_in_a_config_file_is_named(tmp_path):
    path = paper_file(tmp_path, flow={"devise": "cpu"})
    with pytest.raises(SystemExit, match="flow.devise"):
        main(["check", "--configfile", str(path)])


def test_videos_shorter_than_the_clip_are_padded_and_counted(tmp_path):
    lengths = [29, 16, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40]
    report = findings(tmp_path, manifest_path=manifest(tmp_path, frames=lambda i: lengths[i]))
    assert report.problems == []
    [warning] = [w for w in report.warnings if "shorter than a clip" in w]
    assert warning.startswith("2 video(s) are shorter than a clip (32 frames)")
    assert "padded on the left with its first frame" in warning and "1 of them have at most 17 frames" in warning


def test_a_queue_that_never_fills_in_a_stage_is_refused_with_the_numbers(tmp_path):
    report = findings(tmp_path, preset={"moco": {"queue_size": 2048}})
    [problem] = report.problems
    assert "moco.queue_size" in problem and "after 512 steps of 4 clips, but a stage has only 20" in problem
    assert any("larger than the training set (8 videos)" in w for w in report.warnings)


def test_a_dataset_only_evaluated_on_is_not_refused_for_pretraining(tmp_path):
    """The evaluation side of a transfer pair never trains on its videos: the queue problem is a warning."""
    report = findings(tmp_path, pretraining=False, preset={"moco": {"queue_size": 2048}, "optim": {"batch_size": 64}})
    assert report.problems == []
    assert any("pretraining on this dataset would fail" in w and "optim.batch_size" in w for w in report.warnings)


def test_a_queue_filling_most_of_a_stage_is_a_warning(tmp_path):
    report = findings(tmp_path, preset={"moco": {"queue_size": 8}, "cotrain": {"epochs": 3}})
    assert report.problems == []
    assert any("CoCLR waits 2 of its 6 steps" in w for w in report.warnings)


def test_a_batch_larger_than_the_training_split_is_refused(tmp_path):
    report = findings(tmp_path, preset={"optim": {"batch_size": 16}, "finetune": {"batch_size": 32}})
    assert any("fewer than one global batch (16)" in p and "optim.batch_size" in p for p in report.problems)
    assert any(w.startswith("finetune.batch_size (32) is larger than the training split (8)") for w in report.warnings)


def test_a_batch_larger_than_a_class_works(tmp_path):
    """4 clips a batch, 2 training videos a class: contrastive steps do not care about classes."""
    assert findings(tmp_path).problems == []


def test_a_class_without_test_videos_is_a_warning(tmp_path):
    report = findings(tmp_path, manifest_path=manifest(tmp_path, untested=["Rowing"]))
    assert report.problems == []
    assert any("1 class(es) have no test videos (Rowing)" in w for w in report.warnings)


def test_mixed_frame_rates_warn_unless_frames_fps_resamples_them(tmp_path):
    mixed = manifest(tmp_path, frames=lambda i: 40 if i % 2 else 48, fps=lambda i: 25.0 if i % 2 else 30.0)
    report = findings(tmp_path, manifest_path=mixed)
    assert any("frame rates differ (25-30 fps) and frames.fps is null" in w for w in report.warnings)
    report = findings(tmp_path, manifest_path=mixed, frames={"fps": 25, "short_side": 128})
    assert not any("frame rates differ" in w for w in report.warnings)
    assert "shortest video: 40 frames" in report.text()  # 48 frames at 30 fps give 40 at 25


def test_gpus_or_cuda_flow_without_cuda_are_refused(tmp_path):
    report = findings(tmp_path, resources={"gpus": 2, "threads": 1, "workers": 0})
    assert any(p.startswith("resources.gpus is 2 but this machine has no CUDA device") for p in report.problems)
    report = findings(tmp_path, flow={"device": "cuda"})
    assert any(p.startswith("flow.device is cuda") for p in report.problems)
    report = findings(tmp_path, cuda=(True, 1), resources={"gpus": 2, "threads": 1, "workers": 0})
    assert any("only 1 GPU(s) are visible" in p for p in report.problems)
    report = findings(tmp_path, cuda=(True, 2), resources={"gpus": 2, "threads": 1, "workers": 0})
    assert report.problems == [] and "CUDA: available, 2 GPU(s)" in report.text()


def test_without_a_manifest_the_configuration_alone_is_checked(tmp_path):
    report = findings(tmp_path, manifest_path=tmp_path / "absent.csv")
    assert report.problems == [] and "no manifest at" in report.text()


def test_jobs_larger_than_any_slurm_node_are_warned_about(tmp_path):
    """A job asking for more CPUs than the largest node has would pend for ever (PartitionConfig)."""
    report = findings(tmp_path, node_cpus=8, resources={"gpus": 0, "threads": 2, "workers": 8},
                      ingest={"workers": 4})
    warned = " ".join(report.warnings)
    assert "training" in warned and "asks for 10 CPUs" in warned and "PartitionConfig" in warned
    assert "resources.workers" in warned and "ingest (ingest.workers)" not in warned
    assert findings(tmp_path, node_cpus=16, resources={"threads": 2, "workers": 8}).warnings == []
