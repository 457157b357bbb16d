"""MoCo: logits, queue bookkeeping, momentum, shuffle-BN, gradients, and 2-process DDP."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from coclr.losses import info_nce, mil_nce
from coclr.moco import MoCo

ARCH = {"width": 0.125, "depth": 3}


def clips(n, seed):
    return torch.randn(n, 3, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def small_moco(**kwargs):
    torch.manual_seed(0)
    return MoCo(ARCH, dim=16, **{"queue_size": 10, **kwargs})


def test_logits_are_cosines_over_temperature():
    model = small_moco()
    out = model(clips(4, 1), clips(4, 2))
    assert out.logits.shape == (4, 11)
    torch.testing.assert_close(out.logits[:, 0], (out.q * out.k).sum(1) / 0.07)
    torch.testing.assert_close(out.logits[:, 1:], out.q @ model.queue / 0.07)
    torch.testing.assert_close(out.k.norm(dim=1), torch.ones(4))


def test_embeddings_logits_and_loss_are_fp32_under_bf16_autocast():
    """The backbone may run in bf16; the head's output, the logits and the loss may not (bf16 moved
    these logits by 0.02 before)."""
    model = small_moco()
    positives = torch.rand(4, 11, generator=torch.Generator().manual_seed(3)) < 0.3
    positives[:, 0] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clips(4, 1), clips(4, 2))
        loss = mil_nce(out.logits, positives)
    assert out.q.dtype == out.k.dtype == out.logits.dtype == loss.dtype == torch.float32
    torch.testing.assert_close(out.q.norm(dim=1), torch.ones(4), rtol=0, atol=1e-6)
    expected = torch.cat([(out.q * out.k).sum(1, keepdim=True), out.q @ model.queue], dim=1) / 0.07
    assert torch.equal(out.logits, expected)
    assert torch.equal(loss, mil_nce(out.logits, positives))


def test_enqueue_wraps_around_and_keeps_metadata():
    model = small_moco(other_view_dim=3)
    assert not model.queue_full and not model.queue_valid().any()
    for step in range(3):
        keys = torch.full((4, 16), float(step))
        model.enqueue(keys, label=torch.arange(4) + 10 * step, group=torch.full((4,), step),
                      other_view=torch.ones(4, 3) * step)
        assert int(model.queue_filled) == min(4 * (step + 1), 10)
    assert model.queue_full and model.queue_valid().all()
    assert int(model.queue_ptr) == 2
    assert model.queue[0].tolist() == [2, 2, 0, 0, 1, 1, 1, 1, 2, 2]
    assert model.queue_label.tolist() == [22, 23, 2, 3, 10, 11, 12, 13, 20, 21]
    assert model.queue_group.tolist() == [2, 2, 0, 0, 1, 1, 1, 1, 2, 2]
    assert model.queue_other_view[:, 9].tolist() == [2, 2, 2]
    model.enqueue(torch.zeros(2, 16))  # without metadata: unknown label and group
    assert model.queue_label[2:4].tolist() == [-1, -1] and model.queue_group[2:4].tolist() == [-1, -1]
    with pytest.raises(ValueError):
        model.enqueue(torch.zeros(11, 16))


def test_momentum_update():
    model = small_moco(momentum=0.9)
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(1.0)
    before_q = [p.clone() for p in model.encoder_q.parameters()]
    before_k = [p.clone() for p in model.encoder_k.parameters()]
    model(clips(4, 1), clips(4, 2))
    for q, k_old, k_new in zip(before_q, before_k, model.encoder_k.parameters()):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q)


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_shuffle_bn_keys_equal_plain_keys_in_eval_mode(splits):
    model = small_moco(bn_splits=splits).eval()
    x = clips(8, 3)
    with torch.no_grad():
        torch.manual_seed(5)
        shuffled = model._shuffled_keys(x)
        plain = model.encoder_k(x)
    torch.testing.assert_close(shuffled, plain, atol=1e-6, rtol=1e-5)


def test_split_bn_normalises_chunks_separately_in_train_mode():
    model = small_moco(bn_splits=2)
    x = clips(8, 3)
    with torch.no_grad():
        assert not torch.allclose(model._split_bn(model.encoder_q, x), model.encoder_q(x), atol=1e-4)


def test_gradients_reach_only_the_query_encoder():
    model = small_moco()
    info_nce(model(clips(4, 1), clips(4, 2)).logits).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder_q.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.encoder_k.parameters())
    assert model.queue.grad is None


def test_state_dict_names_match_reference():
    """The reference's names, but for queue_vname (queue_group) and queue_second (queue_other_view)."""
    names = set(small_moco().state_dict())
    assert {"queue", "queue_ptr", "queue_label", "queue_group", "queue_other_view", "queue_filled"} <= names
    assert "encoder_q.0.Mixed_3b.branch1.1.conv1.weight" in names and "encoder_k.4.bias" in names


def test_a_state_dict_saved_before_the_rename_loads():
    """Model checkpoints and run states written with the buffer's old name, queue_second, still load (strict)."""
    saved = small_moco(other_view_dim=3)
    saved.enqueue(torch.ones(4, 16), other_view=torch.full((4, 3), 7.0))
    old = {("queue_second" if key == "queue_other_view" else key): value for key, value in saved.state_dict().items()}
    model = small_moco(other_view_dim=3)
    model.load_state_dict(old)
    assert torch.equal(model.queue_other_view, saved.queue_other_view) and model.queue_other_view[0, 0] == 7.0


def ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = DistributedDataParallel(small_moco(queue_size=16))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        x = clips(4, seed=100 * rank + step)
        out = model(x, x.flip(-1))
        loss = info_nce(out.logits)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        label = 100 * rank + 10 * step + torch.arange(4)
        model.module.enqueue(out.k, label=label, group=torch.full((4,), rank))
    torch.save({k: v for k, v in model.module.state_dict().items() if k.startswith("queue")}, f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_share_one_queue(tmp_path):
    mp.spawn(ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    queues = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]
    for key in queues[0]:
        torch.testing.assert_close(queues[0][key], queues[1][key])
    q = queues[0]
    assert int(q["queue_filled"]) == 16 and int(q["queue_ptr"]) == 0
    assert sorted(q["queue_label"].tolist()) == [0, 1, 2, 3, 10, 11, 12, 13, 100, 101, 102, 103, 110, 111, 112, 113]
    assert q["queue_group"].tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    torch.testing.assert_close(q["queue"].norm(dim=0), torch.ones(16))


def one_sgd_step(model, x_q, x_k):
    """Loss and updated query weights after one SGD step (the permutation seeded identically)."""
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(1234)  # shuffle-BN's permutation: rank 0's is broadcast under DDP
    loss = info_nce(model(x_q, x_k).logits)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    module = getattr(model, "module", model)
    return loss.detach(), torch.cat([p.detach().flatten() for p in module.encoder_q.parameters()])


def ddp_step_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x_q, x_k = clips(8, seed=1), clips(8, seed=2)
    mine = slice(4 * rank, 4 * rank + 4)
    loss, weights = one_sgd_step(DistributedDataParallel(small_moco(queue_size=16)), x_q[mine], x_k[mine])
    torch.save({"loss": loss, "weights": weights}, f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def test_ddp_first_step_matches_one_process_with_the_whole_batch(tmp_path):
    """Two processes with 4 clips each = one process with 8 clips in two BN groups."""
    mp.spawn(ddp_step_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]
    loss, weights = one_sgd_step(small_moco(queue_size=16), clips(8, seed=1), clips(8, seed=2))
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss, rtol=1e-4, atol=1e-5)
    for rank in ranks:
        torch.testing.assert_close(rank["weights"], weights, rtol=1e-4, atol=1e-5)


def running_statistics(model):
    module = getattr(model, "module", model)
    return {key: value.clone() for key, value in module.state_dict().items()
            if "running_" in key or "num_batches_tracked" in key}


def ddp_bn_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, mine = DistributedDataParallel(small_moco(queue_size=16)), slice(4 * rank, 4 * rank + 4)
    for step in range(2):
        one_sgd_step(model, clips(8, seed=10 + step)[mine], clips(8, seed=20 + step)[mine])
    if rank == 0:  # what a multi-process trainer saves
        torch.save(running_statistics(model), f"{out_dir}/stats.pt")
    dist.destroy_process_group()


def test_bn_running_statistics_follow_a_two_process_run(tmp_path):
    """DDP broadcasts rank 0's buffers before every forward (broadcast_buffers, its default and
    the reference's), so a 2-process run updates the BN running statistics once a step, from
    rank 0's half of the batch. One process with 2 BN groups must end with the same buffers."""
    mp.spawn(ddp_bn_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "stats.pt", weights_only=True)
    model = small_moco(queue_size=16)
    for step in range(2):
        one_sgd_step(model, clips(8, seed=10 + step), clips(8, seed=20 + step))
    local = running_statistics(model)
    assert local.keys() == ddp.keys() and any("encoder_k" in key for key in local)
    for key in local:
        torch.testing.assert_close(local[key], ddp[key], rtol=1e-4, atol=1e-5, msg=key)
