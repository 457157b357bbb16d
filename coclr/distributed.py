"""One process or many: the same training code under `python` and `torchrun`.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; we then join a process group
(NCCL on GPUs, gloo on CPUs). Without them everything runs in one process.
Each computing entry point sets its process's CPU threads with :func:`set_threads`.
"""

import os

import torch
import torch.distributed as dist


def setup():
    """Join the process group if launched by torchrun; return (rank, world, device)."""
    use_cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


def set_threads(settings: dict) -> None:
    """This process's CPU threads (``resources.threads``); every entry point that computes sets them here."""
    torch.set_num_threads(settings["resources"]["threads"])


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def gather(x):
    """Concatenate ``x`` from all processes along dim 0 (equal sizes; no gradient)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _reduce_device() -> str:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    return "cuda" if dist.get_backend() == "nccl" else "cpu"


def mean_over_processes(value: float) -> float:
    """Average of a scalar over all processes (logs report the global figure)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def any_process(flag: bool) -> bool:
    """True if ``flag`` is set in any process (so that all of them act on it together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
