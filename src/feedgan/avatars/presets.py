"""The avatar presets' defaults and how long each needs to train; no torch, so the CLI's help can read them."""
from __future__ import annotations

# preset -> defaults (any AvatarConfig field); the reasons are in docs/avatars.md
PRESETS: dict[str, dict] = {
    "seed-mlp": dict(size=28, channels=1, z_dim=64, loss="nonsaturating", lr_g=2e-4, lr_d=2e-4,
                     betas=(0.5, 0.999), ema_decay=None, augment="", r1_gamma=0.0),
    "seed-avatar": dict(size=64, channels=3, z_dim=100, loss="nonsaturating", lr_g=2e-4, lr_d=2e-4,
                        betas=(0.5, 0.999), ema_decay=None, augment="", r1_gamma=0.0),
    # TTUR (Heusel et al. 2017) trained DCGAN with lr 1e-4 for G and 4e-4 for D
    "dcgan": dict(size=64, channels=3, z_dim=100, loss="nonsaturating", lr_g=1e-4, lr_d=4e-4,
                  betas=(0.5, 0.999), ema_decay=None, augment="", r1_gamma=0.0),
    # a narrow residual net with lazy R1 (every 16 D updates) costs about what dcgan does per step on CPU
    # TTUR rates and translation-only DiffAugment: in 5-minute probes this learned faster than equal rates
    # with colour + translation + cutout (KID 0.36 against 1.03 without augmentation; see docs/avatars.md)
    "modern": dict(size=64, channels=3, z_dim=128, width=16, loss="hinge", lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.99),
                   ema_decay=0.999, ema_warmup=True, augment="translation", r1_gamma=0.1, penalty_every=16),
}

# preset -> training steps before its scores mean much (docs/avatars-guide.md, "How long to train"): at 32x32 on
# CPU, dcgan and modern ranked consistently at about 3,000 steps (30-minute runs) but were misranked at 200
# (5-minute probes); seed-avatar's collapse showed by 1,000; seed-mlp's recall and FD levelled off between
# 3,000 and 6,000 steps (KID 1.22 at 250 steps, 0.01-0.08 from 1,000 on).
SCORE_AFTER_STEPS: dict[str, int] = {"seed-mlp": 5_000, "seed-avatar": 1_000, "dcgan": 3_000, "modern": 3_000}

# Fewer images than this train with a note: a GAN copies a set this small (few-shot GAN work starts near 100);
# a single picture is refused (train.check_image_count).
FEW_IMAGES = 100
