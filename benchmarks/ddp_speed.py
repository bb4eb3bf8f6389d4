"""DDP speed-up on CPU: the avatar DCGAN at 32x32, one process against two (gloo, one thread each).

    PYTHONPATH=src python benchmarks/ddp_speed.py                 # writes runs/ddp-speed.json
    PYTHONPATH=src python benchmarks/ddp_speed.py --publish       # also docs/benchmarks/ddp-speed.json

Both sides train the same global batch (``--batch`` real images per D update: all of it in one
process, half on each of two ranks) for ``--steps`` timed steps after ``--warmup`` untimed ones,
on generated images. Rounds are interleaved (1, 2, 1, 2, ...) so a busy machine slows both
alike; round ``r`` seeds both sides with ``r``. Each run is a fresh process (the two-process one
under ``torch.distributed.run``); the clock covers the timed steps only, between two barriers.

The result *matches* when the mean D and G losses of the two-process runs lie within the
tolerance of the one-process runs' (three times the spread of the one-process rounds across
seeds, at least 0.05): DDP averages the ranks' gradients, so one step over two half batches is
one step over the whole batch, except that batch norm sees each rank's half alone.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- one run (a worker process; under torchrun, one per rank) ---------------------------------------
class _Curve:
    """A callback keeping the mean D and G loss of every stats tick."""

    def __init__(self):
        self.points: list[dict] = []

    def on_tick(self, trainer, stats: dict) -> None:
        self.points.append({k: stats[k] for k in ("step", "d_loss", "g_loss")})


def worker(args) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from feedgan.avatars.models import build
    from feedgan.avatars.train import AvatarTask
    from feedgan.gan import GANConfig, GANTrainer, ddp

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    images = np.random.default_rng(0).integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8)
    torch.manual_seed(args.seed)  # the same initial weights on both sides (DDP broadcasts rank 0's anyway)
    G, D = build("dcgan", 32, 3, 100, 0, args.width)
    task = AvatarTask(torch.from_numpy(images), None, 0, 100, "")
    config = GANConfig(loss="nonsaturating", lr_g=1e-4, lr_d=4e-4, batch_size=args.batch // world,
                       max_steps=args.warmup, tick_every=args.tick, checkpoint_every=None, seed=args.seed,
                       device="cpu")
    trainer = GANTrainer(G, D, task, config)
    trainer.fit()
    collect = _Curve()
    trainer.config.max_steps = args.warmup + args.steps
    ddp.barrier(trainer.dist)
    t0 = time.perf_counter()
    trainer.fit(callbacks=[collect])
    ddp.barrier(trainer.dist)
    seconds = time.perf_counter() - t0
    if trainer.dist.is_main:
        Path(args.out).write_text(json.dumps({"procs": world, "seconds": seconds,
                                              "steps_per_s": args.steps / seconds, "curve": collect.points}))
    if dist.is_initialized():
        ddp.teardown()


# -- the interleaved comparison -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(procs: int, seed: int, args, folder: Path) -> dict:
    out = folder / f"p{procs}-s{seed}.json"
    flags = ["--worker", "--out", str(out), "--seed", str(seed), "--steps", str(args.steps), "--warmup",
             str(args.warmup), "--batch", str(args.batch), "--width", str(args.width), "--tick", str(args.tick),
             "--images", str(args.images)]
    launcher = [] if procs == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--nnodes",
                                      "1", "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FEEDGAN_NO_PROGRESS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, *launcher, __file__, *flags], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"the {procs}-process run (seed {seed}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def _mean_loss(run: dict, key: str) -> float:
    return statistics.fmean(t[key] for t in run["curve"] if t[key] is not None)


def summarise(rounds: list[dict]) -> dict:
    one = [r for r in rounds if r["procs"] == 1]
    two = [r for r in rounds if r["procs"] == 2]
    ratios = [b["steps_per_s"] / a["steps_per_s"] for a, b in zip(one, two)]  # interleaved pairs
    losses = {}
    for key in ("d_loss", "g_loss"):
        a, b = [_mean_loss(r, key) for r in one], [_mean_loss(r, key) for r in two]
        tol = max(3 * (statistics.stdev(a) if len(a) > 1 else 0.0), 0.05)
        diff = statistics.fmean(b) - statistics.fmean(a)
        losses[key] = {"one_process": round(statistics.fmean(a), 4), "two_processes": round(statistics.fmean(b), 4),
                       "difference": round(diff, 4), "tolerance": round(tol, 4), "matches": abs(diff) <= tol}
    return {"steps_per_s": {"1": _spread([r["steps_per_s"] for r in one]),
                            "2": _spread([r["steps_per_s"] for r in two])},
            "speedup": _spread(ratios), "losses": losses,
            "matches": all(v["matches"] for v in losses.values())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved pairs of runs (1 then 2 processes)")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32, help="global batch (split over the ranks)")
    ap.add_argument("--width", type=int, default=32, help="DCGAN base channels")
    ap.add_argument("--tick", type=int, default=5, help="steps per point of the loss curve")
    ap.add_argument("--images", type=int, default=256, help="generated training images")
    ap.add_argument("--publish", action="store_true", help="also write docs/benchmarks/ddp-speed.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if args.batch % 2:
        raise SystemExit(f"--batch {args.batch}: give an even global batch, it is split over two ranks")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for procs in (1, 2):
                run = run_once(procs, r, args, Path(tmp))
                rounds.append({"round": r, **run})
                print(f"round {r}: {procs} process(es) {run['steps_per_s']:.2f} steps/s", flush=True)
    result = {"setting": {"model": "avatar dcgan 32x32", "width": args.width, "global_batch": args.batch,
                          "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
                          "backend": "gloo", "threads_per_process": 1},
              "machine": {"cpus": os.cpu_count(), "load_1min_at_end": round(os.getloadavg()[0], 2)},
              "command": "PYTHONPATH=src python benchmarks/ddp_speed.py" + (" --publish" if args.publish else ""),
              **summarise(rounds), "rounds": rounds}
    targets = [ROOT / "runs" / "ddp-speed.json"] + ([ROOT / "docs" / "benchmarks" / "ddp-speed.json"]
                                                     if args.publish else [])
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    s = result["speedup"]
    print(f"speed-up 2 vs 1 process: {s['median']:.2f}x (range {s['min']:.2f}-{s['max']:.2f}); "
          f"losses match: {result['matches']}; wrote {', '.join(str(p) for p in targets)}")
    return result


if __name__ == "__main__":
    main()
