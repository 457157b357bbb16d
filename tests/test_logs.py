"""The log line an entry point configures: a time stamp, the rank under torchrun, progress from rank 0 only."""

import logging
import re

import pytest

from coclr import logs

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
def configured():
    """Configure as a process with the given environment would; the suite's own configuration afterwards."""
    yield lambda environ: logs.configure(environ)
    logs.configure({})


def lines(capsys) -> list:
    return capsys.readouterr().err.splitlines()


def test_a_single_process_logs_with_a_time_stamp(configured, capsys):
    configured({})
    logging.getLogger("coclr.training.trainer").info("resumed from runs/x/state.pt at epoch 2, step 0")
    [line] = lines(capsys)
    assert re.fullmatch(rf"{STAMP} resumed from runs/x/state.pt at epoch 2, step 0", line), line


def test_under_torchrun_each_line_names_its_rank_and_only_rank_0_logs_progress(configured, capsys):
    configured({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    log = logging.getLogger("coclr.training.stage")
    log.info("8 videos, batch 4 per process x 2 = 8 global, lr 0.001")
    log.warning("settings changed since runs/x/state.pt was written: starting afresh")
    [line] = lines(capsys)
    assert re.fullmatch(rf"{STAMP} \[rank 1\] settings changed since .*", line), line
    configured({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    log.info("8 videos, batch 4 per process x 2 = 8 global, lr 0.001")
    [line] = lines(capsys)
    assert re.fullmatch(rf"{STAMP} \[rank 0\] 8 videos, .*", line), line


def test_one_process_of_one_has_no_rank_and_configuring_again_does_not_repeat_lines(configured, capsys):
    configured({"RANK": "0", "WORLD_SIZE": "1"})
    configured({"RANK": "0", "WORLD_SIZE": "1"})
    logging.getLogger("coclr.ingest").info("ingest: 12 videos")
    [line] = lines(capsys)
    assert "rank" not in line and line.endswith(" ingest: 12 videos")
