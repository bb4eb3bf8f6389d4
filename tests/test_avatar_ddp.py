"""The avatar trainer under torchrun: two CPU ranks (gloo) train one run, rank 0 alone writes it.

``feedgan avatars train`` runs on each rank of ``python -m torch.distributed.run --nproc_per_node 2``.
An audit hook on every rank records each write into the runs folder (opens for writing, temporary
files, renames, folders made, files removed). Rank 1's clock is made to jump past the time budget
after step 4, while rank 0's never does: the ranks must still stop at the same step.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np

SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path

    root, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    runs = os.path.abspath(root / "runs")
    writes = []  # (event, path relative to the runs folder)

    def _under_runs(p):
        if isinstance(p, int):
            return None
        p = os.path.abspath(os.fsdecode(p))
        return os.path.relpath(p, runs) if p == runs or p.startswith(runs + os.sep) else None

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    TARGET = {"os.rename": 1, "shutil.copyfile": 1, "os.link": 1, "os.symlink": 1}

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if not ((mode is not None and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS)):
                return
        elif event in TARGET:
            path = args[TARGET[event]]
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "tempfile.mkstemp", "shutil.rmtree"):
            path = args[0]
        else:
            return
        rel = _under_runs(path)
        if rel is not None:
            writes.append((event, rel))

    sys.addaudithook(hook)
    import torch
    torch.set_num_threads(1)
    import feedgan.avatars.train as avatar_train
    from feedgan.cli import app
    from feedgan.gan import ddp

    if rank == 1:  # this rank's budget is spent at its 4th step (its 5th clock read), rank 0's never
        class JumpingClock:
            reads = 0
            def perf_counter(self):
                JumpingClock.reads += 1
                return time.perf_counter() + (1e6 if JumpingClock.reads >= 5 else 0.0)
        avatar_train.time = JumpingClock()

    app(["avatars", "train", "--images", sys.argv[2], "--preset", "dcgan", "--size", "8", "--width", "8",
         "--batch-size", "8", "--steps", "6", "--sample-every", "2", "--checkpoint-every", "2", "--budget", "1h",
         "--device", "cpu", "--runs-dir", runs, "--no-progress"], standalone_mode=False)
    folders = sorted(os.listdir(runs))
    ready = [os.path.exists(os.path.join(runs, f, "generator.safetensors")) for f in folders]
    (root / f"result-rank{rank}.json").write_text(json.dumps({"writes": writes, "folders": folders,
                                                              "generator_ready": ready}))
    ddp.teardown()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    """``cmd`` in its own process group, so that on a timeout (ranks stuck in a collective) the ranks
    go down with the launcher."""
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            err += "\n[timed out after 150 s: the ranks did not finish together]"
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def _launch(script, root, images) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", FEEDGAN_NO_PROGRESS="1")
    for attempt in range(2):
        out = root / f"attempt{attempt}"  # a relaunch starts from an empty runs folder
        out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(out), str(images)]
        proc = _run(cmd, env)
        proc.out = out
        # on a loaded 2-core machine gloo can abort a rank at exit after the script finished: one relaunch
        if proc.returncode == 0 or "terminate called without an active exception" not in proc.stderr:
            return proc
    return proc


def test_two_ranks_train_one_avatar_run_and_only_rank0_writes_it(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "faces.npz"
    np.savez(images, images=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    script = tmp_path / "train_avatars_ddp.py"
    script.write_text(SCRIPT)
    proc = _launch(script, tmp_path, images)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = (json.loads((proc.out / f"result-rank{r}.json").read_text()) for r in (0, 1))

    assert rank1["writes"] == []  # rank 1 never touched the runs folder for writing
    assert rank0["folders"] == rank1["folders"] and len(rank0["folders"]) == 1  # one run folder, shared
    assert rank1["generator_ready"] == [True]  # train returned on rank 1 only once rank 0 had finished
    run = proc.out / "runs" / rank0["folders"][0]

    # the ranks stopped together at rank 1's budget (step 4 of 6): one set of outputs for steps 2 and 4
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [2, 4]
    assert sorted(p.name for p in run.iterdir()) == ["avatar.json", "checkpoints", "generator.safetensors",
                                                      "samples", "stats.jsonl"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["latest.png", "step-0000002.png",
                                                                   "step-0000004.png"]
    # each file put in place once (the final grid is not written a second time at the end)
    placed = Counter(os.path.relpath(dst, run.name) for event, dst in rank0["writes"] if event == "os.rename")
    assert placed == {"avatar.json": 1, "generator.safetensors": 1, "checkpoints/ckpt-00000002.pt": 1,
                      "checkpoints/ckpt-00000004.pt": 1, "samples/step-0000002.png": 1,
                      "samples/step-0000004.png": 1, "samples/latest.png": 2}
