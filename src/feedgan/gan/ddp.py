"""Process-group helpers: plain ``DistributedDataParallel`` under ``torchrun``.

Distributed mode is detected from the ``RANK`` / ``WORLD_SIZE`` (and ``LOCAL_RANK``) variables
that ``torchrun`` sets; ``MASTER_ADDR`` / ``MASTER_PORT`` are read by ``init_process_group``
itself. Backend: NCCL when the device is CUDA, gloo on CPU. One process per device, so rank
``r`` trains on ``cuda:LOCAL_RANK``.

    torchrun --nproc_per_node 2 train.py      # each rank: GANTrainer(...).fit()

Without those variables (or with ``WORLD_SIZE=1``) every helper here is a no-op and the trainer
runs as a single process. All collectives here must be called by every rank in the same order;
the trainer guarantees it by running the same schedule on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


class ReplicaDivergenceError(RuntimeError):
    """The DDP replicas no longer hold the same weights."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def env_info() -> DistInfo:
    """The rank layout of this process: from the live process group if there is one, else from
    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, else a single process."""
    local = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world > 1 and not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; a bare ``"cuda"`` becomes ``cuda:LOCAL_RANK``."""
    info = info or DistInfo()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Resolve the device and, under torchrun, join the process group (once per process)."""
    info = env_info()
    dev = resolve_device(device, info)
    if info.enabled and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def teardown() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any leaves: a rank that tears down while another
        # still has gloo traffic in flight aborts the whole job
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``module`` wrapped in DDP when distributed (rank 0's weights are broadcast to all ranks
    here), else ``module`` itself."""
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _comm_device(device: torch.device) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (e.g. until rank 0's files are complete); a no-op alone."""
    if info.enabled:
        dist.barrier()


def from_main(fn, info: DistInfo):
    """``fn()`` run on rank 0 alone, its result (picklable) handed to every rank; an error ``fn``
    raises on rank 0 is raised on every rank, so none is left waiting."""
    if not info.enabled:
        return fn()
    box = [None, None]  # [result, error]
    if info.is_main:
        try:
            box[0] = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            box[1] = exc
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise box[1]
    return box[0]


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """``flag`` OR-ed over all ranks (so every rank takes the same branch)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=_comm_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather(t: torch.Tensor, info: DistInfo, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of ``t`` (same shape and dtype on each), on the CPU, in rank order."""
    if not info.enabled:
        return [t.detach().cpu()]
    t = t.detach().to(_comm_device(device)).contiguous()
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [o.cpu() for o in out]


def checksum(module: nn.Module) -> torch.Tensor:
    """(2,) float64: the sum and the sum of squares of all parameters."""
    s = torch.zeros(2, dtype=torch.float64)
    for p in module.parameters():
        v = p.detach().double()
        s += torch.stack([v.sum(), v.pow(2).sum()]).cpu()
    return s


def check_in_sync(modules: dict[str, nn.Module | None], info: DistInfo, device: torch.device,
                  step: int) -> None:
    """Raise :class:`ReplicaDivergenceError` on every rank when the ranks' parameters differ.

    DDP keeps replicas identical by construction (same broadcast start, same averaged
    gradients, same optimizer); a mismatch means something updated weights outside DDP.
    """
    if not info.enabled:
        return
    names = [n for n, m in modules.items() if m is not None]
    local = torch.stack([checksum(modules[n]) for n in names])  # (n_modules, 2)
    ranks = all_gather(local, info, device)
    for r, other in enumerate(ranks[1:], start=1):
        # identical weights give bitwise-identical sums; the tolerance only forgives reductions
        # that a backend might order differently
        diff = ~torch.isclose(other, ranks[0], rtol=1e-9, atol=0.0).all(1)  # (n_modules,)
        if diff.any():
            name = names[int(diff.nonzero()[0, 0])]
            raise ReplicaDivergenceError(
                f"DDP replicas diverged at step {step}: the {name} parameters of rank {r} differ from "
                f"rank 0 (checksums {ranks[0][names.index(name)].tolist()} vs {other[names.index(name)].tolist()}); "
                "refusing to save. Some code changed weights outside DDP on one rank only.")
