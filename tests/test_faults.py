"""Fault injection, reduced: jobs and Snakemake itself killed mid-run, and the rerun loses nothing."""

import pytest

from benchmarks import faults


@pytest.mark.slow
def test_killed_jobs_and_a_killed_workflow_rerun_to_identical_results(tmp_path):
    """On a seed's own chain (seed 1, under seed1/): the guarantees hold per seed."""
    summary = faults.main(["--seed", "1", "--target", "models/synthetic/seed1/infonce_flow.pt",
                           "--stages", "frames", "pretrain", "--workflow-kills", "flow", "--keep", str(tmp_path)])
    assert summary["faults injected"] >= 2  # a job faster than its drawn moment escapes its fault
    assert summary["survived"] == summary["faults injected"]
    assert summary["results identical"] == "yes" and summary["different"] == []
    assert summary["jobs recomputed"] == 0
