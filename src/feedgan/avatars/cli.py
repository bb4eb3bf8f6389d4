"""``feedgan avatars``: train, sample, interpolate and score avatar GANs.

    feedgan avatars train --images faces/ --size 32 --preset modern --budget 30m
    feedgan avatars train --images utkface.tar --where 'age>=18' --condition gender
    feedgan avatars train --resume runs/00003-avatars-modern --budget 1h   # one hour in all
    feedgan avatars train --images faces.tar --checkpoint-every 100        # resume loses at most 100 steps
    feedgan avatars sample runs/00003-avatars-modern -n 64 --out grid.png --seed 1
    feedgan avatars interpolate runs/00003-avatars-modern --steps 8 --out walk.png
    feedgan avatars score runs/00003-avatars-modern --real heldout/ -n 2000
    feedgan avatars score runs/00004-avatars-dcgan --real heldout-sheet.png --sheet 24x24
    torchrun --nproc_per_node 2 --no-python feedgan avatars train --images faces/ --device cpu   # DDP
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from ..progress import console
from .presets import PRESETS, SCORE_AFTER_STEPS

# what each preset is, for the help; its default size and the steps worth scoring come from presets.py
_PRESET_KINDS = {"seed-mlp": "dense G and D", "seed-avatar": "dense G, strided-convolution D",
                 "dcgan": "DCGAN (transposed convolutions, batch norm)",
                 "modern": "residual G and D, hinge loss, DiffAugment, lazy R1, EMA"}


def _preset_line(name: str) -> str:
    size, colour = PRESETS[name]["size"], "grayscale" if PRESETS[name]["channels"] == 1 else "RGB"
    return (f"{name}: {_PRESET_KINDS[name]}, {size}x{size} {colour} by default, scores mean much after about "
            f"{SCORE_AFTER_STEPS[name]:,} steps")


PRESET_HELP = "; ".join(_preset_line(name) for name in PRESETS)
avatars_app = typer.Typer(no_args_is_help=True, help=(
    "Avatar GANs: train, sample, interpolate and score small square pictures (faces, sprites). Presets draw "
    "64x64 RGB by default (seed-mlp 28x28 grayscale); --size takes a power of two from 8 (any size for "
    "seed-mlp). `train --help` lists the presets and the steps each needs before its scores mean much."))

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


_SHEET_HELP = ("cut a sprite sheet into tiles of WxH pixels, e.g. 24x24 (the tile must divide the sheet and "
               "follow its grid; an empty margin or blank tiles at the end are dropped)")


def parse_budget(text: str | None) -> float | None:
    """``"30m"``, ``"1h30m"``, ``"90s"`` or ``"600"`` (seconds) -> seconds; None stays None."""
    if text is None:
        return None
    m = _DURATION.match(text.strip().lower())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"bad --budget {text!r}: write it like 30m, 1h30m, 90s or 600 (seconds)")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


@avatars_app.command("train")
def train_cmd(
    images: Optional[Path] = typer.Option(None, help="folder, .tar/.zip, .npz of uint8 arrays, or a sprite sheet"),
    preset: str = typer.Option("modern", help=PRESET_HELP),
    size: Optional[int] = typer.Option(None, help="image side in pixels: a power of two from 8, any size for "
                                                  "seed-mlp (default: the preset's, 64; 28 for seed-mlp)"),
    budget: Optional[str] = typer.Option(None, help="stop after this much training time in all, e.g. 30m, 1h, 90s "
                                                            "(a resumed run counts its earlier time)"),
    steps: Optional[int] = typer.Option(None, help="stop after this many steps (one D and one G update each); "
                                              "default 100,000, or the resumed run's"),
    batch_size: int = typer.Option(64),
    width: Optional[int] = typer.Option(None, help="base channel count of G and D (default: the preset's)"),
    sheet: Optional[str] = typer.Option(None, help=_SHEET_HELP),
    where: Optional[str] = typer.Option(None, help="filter on file-name labels, e.g. 'age>=18'"),
    condition: Optional[str] = typer.Option(None, help="condition on a file-name label, e.g. gender"),
    skip_bad: bool = typer.Option(False, help="skip images that cannot be decoded instead of stopping"),
    limit: Optional[int] = typer.Option(None, help="use at most this many images"),
    sample_every: int = typer.Option(500, help="write a sample grid every N steps"),
    checkpoint_every: Optional[int] = typer.Option(None, min=1, help="write a checkpoint every N steps (default "
                                                   "1000, or the resumed run's; the last step always gets one)"),
    no_size_limits: bool = typer.Option(False, "--no-size-limits", help="decode images of any size (by default "
                                        "images above 50 million pixels or 256 MiB, or 8 GiB in all, are refused)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0),
    runs_dir: Path = typer.Option(Path("runs")),
    resume: Optional[Path] = typer.Option(None, help="continue this run from its newest checkpoint"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
):
    """Train an avatar GAN; sample grids, stats.jsonl and checkpoints go to a run folder (under torchrun:
    every rank trains, rank 0 alone writes and prints)."""
    from ..gan import ddp
    from ..io import ArtifactError
    from ..progress import progress_bar
    from ..runs import new_run_dir
    from .images import load_images
    from .train import AvatarConfig, check_image_count, last_stats, read_run, train

    budget_s = parse_budget(budget)
    if resume is not None:
        cfg, meta = read_run(resume)
        cfg = replace(cfg, budget_s=budget_s, max_steps=steps or cfg.max_steps,
                      checkpoint_every=checkpoint_every or cfg.checkpoint_every)
        src = meta["images"] if isinstance(meta.get("images"), dict) else {}
        if not isinstance(src.get("path"), str):
            raise ArtifactError(resume / "avatar.json", 'does not say where its images came from ("images": '
                                '{"path": ...})', fix="add the path, or train a new run")
        src = {**src, "no_size_limits": src.get("no_size_limits", False) or no_size_limits}
        run = resume
    else:
        if images is None:
            raise ValueError("give --images PATH (or --resume RUN)")
        extra = {"checkpoint_every": checkpoint_every} if checkpoint_every else {}
        cfg = AvatarConfig(preset=preset, size=size, width=width, batch_size=batch_size, max_steps=steps or 100_000,
                           budget_s=budget_s, sample_every=sample_every, condition=condition, seed=seed,
                           device=device, **extra).resolved()
        src = {"path": str(images), "sheet": sheet, "where": where, "skip_bad": skip_bad, "limit": limit,
               "no_size_limits": no_size_limits}
        run = None
    info, _ = ddp.setup(cfg.device)
    say = console.print if info.is_main else (lambda *a, **k: None)
    with progress_bar(progress if info.is_main else False) as prog:
        data = load_images(src["path"], size=cfg.size, grayscale=cfg.channels == 1, sheet=src.get("sheet"),
                           where=src.get("where"), skip_bad=src.get("skip_bad", False), limit=src.get("limit"),
                           limits=_limits(src["no_size_limits"]), progress=prog)
        for line in data.skipped[:5]:
            say(f"[yellow]skipped[/] {line}", highlight=False)
        if len(data.skipped) > 5:
            say(f"[yellow]skipped[/] {len(data.skipped) - 5} more", highlight=False)
        note = check_image_count(len(data), src)  # refuses a single picture before a run folder exists
        if note:
            say(f"[yellow]note[/] {note}", highlight=False)
        # rank 0 numbers and makes the folder; every rank trains into that one
        run = run or ddp.from_main(lambda: new_run_dir(runs_dir, f"avatars-{cfg.preset}"), info)
        say(f"[bold]avatars {cfg.preset}[/] {len(data):,} images at {cfg.size}x{cfg.size} -> {run}")
        train(data, run, cfg, progress=prog, resume=resume is not None, source=src)
    last = last_stats(run)
    if last:
        losses = ", ".join(f"{k} {last[k]:.3f}" for k in ("d_loss", "g_loss") if last.get(k) is not None)
        say(f"step {last['step']}: {losses}, {last['samples_per_s']:.0f} samples/s")
    say(f"samples: {run / 'samples' / 'latest.png'}; generator: {run / 'generator.safetensors'}")


def _limits(off: bool):
    from .images import NO_LIMITS, SizeLimits

    return NO_LIMITS if off else SizeLimits()


_SCALE_HELP = ("enlarge the grid by this whole factor, nearest neighbour (default: the smallest that makes it "
               "at least 512 px wide; 1: raw pixels)")


@avatars_app.command("sample")
def sample_cmd(
    run: Path = typer.Argument(..., help="a run folder from `feedgan avatars train`"),
    n: int = typer.Option(64, "-n", help="how many avatars"),
    out: Path = typer.Option(Path("avatars.png"), help="grid PNG, or a folder with --each"),
    each: bool = typer.Option(False, help="write one PNG per avatar into the folder --out"),
    seed: int = typer.Option(0),
    label: Optional[int] = typer.Option(None, help="class to draw (conditional runs)"),
    scale: Optional[int] = typer.Option(None, help=_SCALE_HELP + "; --each files stay one pixel per pixel"),
):
    """Draw avatars from a trained run: one grid PNG, or one PNG each."""
    from .grid import save_each, save_grid
    from .train import sample

    if n < 1:
        raise ValueError(f"-n must be at least 1, got {n}")
    images = sample(run, n, seed, label)
    paths = save_each(images, out) if each else [save_grid(images, out, scale=scale)]
    console.print(f"wrote {len(images)} avatars to {out if each else paths[0]}")


@avatars_app.command("interpolate")
def interpolate_cmd(
    run: Path = typer.Argument(..., help="a run folder from `feedgan avatars train`"),
    steps: int = typer.Option(8, help="images per walk"),
    rows: int = typer.Option(4, help="how many walks"),
    out: Path = typer.Option(Path("interpolation.png")),
    seed: int = typer.Option(0),
    scale: Optional[int] = typer.Option(None, help=_SCALE_HELP),
):
    """Latent walks: each row moves between two random latents in ``steps`` images."""
    from .grid import save_grid
    from .train import interpolate

    images = interpolate(run, steps, rows, seed)
    save_grid(images, out, nrow=steps, scale=scale)
    console.print(f"wrote {rows} walks of {steps} to {out}")


@avatars_app.command("score")
def score_cmd(
    run: Path = typer.Argument(..., help="a run folder from `feedgan avatars train`"),
    real: Path = typer.Option(..., help="real images to compare with (ideally not used in training): a folder, "
                                        ".tar/.zip, .npz, or a sprite sheet with --sheet"),
    sheet: Optional[str] = typer.Option(None, help="--real is a sprite sheet: " + _SHEET_HELP),
    n: int = typer.Option(2000, "-n", help="generated (and at most real) images to score"),
    inception_weights: Optional[Path] = typer.Option(None, help="the standard FID Inception weights (.pth): "
                                                                 "adds the real FID / KID"),
    out: Optional[Path] = typer.Option(None, help="also write the scores as JSON here"),
    seed: int = typer.Option(0),
    skip_bad: bool = typer.Option(False, help="skip real images that cannot be decoded"),
    no_size_limits: bool = typer.Option(False, "--no-size-limits", help="decode real images of any size"),
):
    """KID, Fréchet distance, precision/recall, density/coverage and SWD against real images, next to
    the same metrics between two halves of the real images (the floor), plus a memorisation check.
    A run that trained fewer steps than its preset needs gets a note (see --preset of train)."""
    from ..io import write_json
    from .scoring import score_run
    from .train import score_note

    result = score_run(run, real, n=n, seed=seed, inception_weights=inception_weights, skip_bad=skip_bad,
                       limits=_limits(no_size_limits), sheet=sheet)
    note = score_note(result["preset"], result["steps"])
    if note:
        console.print(f"[yellow]note[/] {note}", highlight=False)
    for space, metrics in result["spaces"].items():
        console.print(f"[bold]{space}[/] ({metrics['n_fake']} generated, {metrics['n_real']} real)")
        for k, v in metrics["fake"].items():
            console.print(f"  {k:16s} {v:10.4f}   (real vs real {metrics['floor'][k]:.4f})")
        if "memorisation" in metrics:
            m = metrics["memorisation"]
            console.print(f"  memorisation: nearest-train / nearest-real distance ratio {m['ratio']:.2f}, "
                          f"{m['share_closer_to_train']:.0%} closer to a training image")
    if out is not None:
        write_json(out, result)
        console.print(f"wrote {out}")
