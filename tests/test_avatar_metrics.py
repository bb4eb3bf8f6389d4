"""Offline avatar metrics (feedgan.avatars.metrics) and the FID Inception-v3 port (feedgan.avatars.inception).

Hand-checked cases on small synthetic sets: closed forms for FD, a brute-force double loop for KID,
exact values for identical sets, and clear separations for shifted or copied sets.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from feedgan.avatars.inception import InceptionV3FID, InceptionWeightsError, load_inception
from feedgan.avatars.metrics import (RandomCNNFeatures, extract_features, frechet_distance,
                                     frechet_distance_from_moments, kid, memorisation,
                                     precision_recall_density_coverage, score, sliced_wasserstein, to_float_nchw)


def smooth_images(n: int, seed: int, size: int = 32, channels: int = 3) -> np.ndarray:
    """uint8 (n, size, size, channels) images: upsampled 4x4 random colour layouts plus a little pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    layout = torch.randn(n, channels, 4, 4, generator=generator) * 0.5
    pixels = F.interpolate(layout, size=(size, size), mode="bilinear", align_corners=False)
    pixels = pixels + 0.05 * torch.randn(pixels.shape, generator=generator)
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def add_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noisy = images + np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


# --- images and the random feature network ---------------------------------------------------------------

def test_to_float_nchw_accepts_uint8_arrays_and_float_tensors():
    images = np.array([[[[0, 255, 51]]]], dtype=np.uint8)  # one 1x1 RGB image
    x = to_float_nchw(images)
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    assert torch.allclose(x.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    assert to_float_nchw(x.double()).dtype == torch.float32
    with pytest.raises(TypeError):
        to_float_nchw(images.astype(np.float32))


def test_random_cnn_is_deterministic_and_leaves_global_rng_alone():
    images = smooth_images(8, seed=1)
    state = torch.get_rng_state()
    first, second = RandomCNNFeatures(), RandomCNNFeatures()
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        assert torch.equal(first(images), second(images))
        assert not torch.equal(first(images), RandomCNNFeatures(seed=1)(images))


def test_random_cnn_features_are_informative():
    features = extract_features(smooth_images(64, seed=2))
    assert features.shape == (64, 256) and features.dtype == np.float64 and np.isfinite(features).all()
    spread = features.std(axis=0)
    assert spread.mean() > 1e-2 * np.abs(features).mean()  # images differ in feature space
    grey = extract_features(smooth_images(4, seed=3, channels=1))
    assert grey.shape == (4, 256)


def test_extract_features_does_not_depend_on_batching_or_input_kind():
    images = smooth_images(10, seed=4)
    whole = extract_features(images)
    assert np.allclose(extract_features(images, batch_size=3), whole, atol=1e-5)
    assert np.allclose(extract_features(to_float_nchw(images)), whole, atol=1e-5)


# --- KID -------------------------------------------------------------------------------------------------

def brute_force_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as explicit loops."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), repeat=2)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_brute_force_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(12, 5))
    mean, std = kid(x, y, n_subsets=3, subset_size=100)  # subsets = permutations of all rows
    assert mean == pytest.approx(brute_force_kid(x, y), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_near_zero_for_matching_sets_and_large_for_different_ones():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    shifted = rng.normal(1.0, 1.0, size=(2000, 8))
    different, _ = kid(x, shifted, n_subsets=3)
    itself, _ = kid(x, x, n_subsets=3, subset_size=2000)
    same_distribution, _ = kid(x, y, n_subsets=3)
    assert abs(itself) < 1e-3 * different and abs(same_distribution) < 1e-2 * different
    assert different > 1.0
    # a set against itself: exactly -2 (mean k(x, x) - mean off-diagonal k) / m, below 0 by O(1/m)
    kernel = (x @ x.T / 8 + 1) ** 3
    off_diagonal = (kernel.sum() - np.trace(kernel)) / (2000 * 1999)
    assert itself == pytest.approx(-2 * (np.trace(kernel) / 2000 - off_diagonal) / 2000, rel=1e-9)


# --- Fréchet distance ------------------------------------------------------------------------------------

def test_frechet_distance_from_exact_moments_matches_closed_forms():
    fd = frechet_distance_from_moments
    # 1-d: (m1 - m2)^2 + (s1 - s2)^2
    assert fd(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == pytest.approx(9.0 + 1.0)
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (sqrt a_i - sqrt b_i)^2
    mu_a, mu_b, cov_a, cov_b = np.zeros(2), np.array([1.0, 0.0]), np.diag([1.0, 16.0]), np.diag([4.0, 1.0])
    expected = 1.0 + (1 - 2) ** 2 + (4 - 1) ** 2
    assert fd(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected)
    assert fd(mu_a, cov_a, mu_a, cov_a) == pytest.approx(0.0, abs=1e-12)
    # rotating both Gaussians leaves the distance unchanged
    r = np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    assert fd(r @ mu_a, r @ cov_a @ r.T, r @ mu_b, r @ cov_b @ r.T) == pytest.approx(expected)
    # non-commuting covariances: the textbook formula with a general matrix square root
    rotated = r @ cov_a @ r.T
    textbook = 1.0 + np.trace(rotated + cov_b - 2 * scipy.linalg.sqrtm(rotated @ cov_b).real)
    assert fd(mu_a, rotated, mu_b, cov_b) == pytest.approx(textbook)


def test_frechet_distance_of_samples_is_close_to_isotropic_closed_form():
    rng = np.random.default_rng(2)
    d, s1, s2 = 3, 1.0, 2.0
    mu1, mu2 = np.zeros(d), np.array([1.0, -1.0, 0.5])
    a, b = rng.normal(mu1, s1, size=(20_000, d)), rng.normal(mu2, s2, size=(20_000, d))
    expected = np.sum((mu1 - mu2) ** 2) + d * (s1 - s2) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert frechet_distance(a[:, :1], b[:, :1]) == pytest.approx(1.0 + 1.0, rel=0.05)  # 1-d: shapes (N, 1)
    assert 0.0 <= frechet_distance(a, a) < 1e-8


# --- precision, recall, density, coverage -----------------------------------------------------------------

def test_prdc_identical_sets_are_exact():
    x = np.random.default_rng(3).normal(size=(200, 6))
    result = precision_recall_density_coverage(x, x.copy(), k=5)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    assert result["density"] == pytest.approx(6 / 5)  # each ball holds its centre and its 5 neighbours


def test_prdc_same_distribution_and_far_away_fakes():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    result = precision_recall_density_coverage(real, fake, k=5, chunk_size=64)
    assert min(result["precision"], result["recall"], result["coverage"]) > 0.85
    assert result["density"] == pytest.approx(1.0, abs=0.15)
    far = precision_recall_density_coverage(real, fake + 20.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    collapsed = precision_recall_density_coverage(real, 0.05 * fake, k=5)  # good quality, no diversity
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.3


# --- sliced Wasserstein distance ----------------------------------------------------------------------------

def test_swd_self_is_zero_and_grows_with_noise():
    images = smooth_images(100, seed=5)
    itself = sliced_wasserstein(images, images, n_patches=32)
    assert set(itself) == {"swd_32", "swd_16", "swd_mean"}
    assert all(value == 0.0 for value in itself.values())
    independent = sliced_wasserstein(images, smooth_images(100, seed=6), n_patches=32)
    noisy = sliced_wasserstein(images, add_noise(images, 25.0), n_patches=32)
    assert noisy["swd_32"] > 3 * independent["swd_32"] > 0  # noise shows at the finest level
    dark = sliced_wasserstein(images, (images * 0.5).astype(np.uint8), n_patches=32)
    assert dark["swd_16"] > 3 * independent["swd_16"]  # a colour shift shows at the coarsest level


# --- memorisation ---------------------------------------------------------------------------------------------

def test_memorisation_flags_copies_of_training_samples():
    rng = np.random.default_rng(7)
    train, heldout = rng.normal(size=(300, 8)), rng.normal(size=(200, 8))  # train is subsampled to 200
    copies = train[rng.choice(300, 100)] + rng.normal(0.0, 1e-3, size=(100, 8))
    copied = memorisation(copies, train, heldout)
    fresh = memorisation(rng.normal(size=(100, 8)), train, heldout)
    assert copied["ratio"] < 0.05 and copied["share_closer_to_train"] > 0.6
    assert 0.75 < fresh["ratio"] < 1.3 and 0.3 < fresh["share_closer_to_train"] < 0.7


# --- score ------------------------------------------------------------------------------------------------------

def test_score_reports_every_metric_and_the_real_floor():
    real, fake = smooth_images(200, seed=8), add_noise(smooth_images(200, seed=9), 40.0)
    train, heldout = smooth_images(100, seed=10), smooth_images(100, seed=11)
    report = score(real, fake, train=train, heldout=heldout)
    metric_keys = {"fd", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "swd_32", "swd_16",
                   "swd_mean"}
    extra_keys = {"n_real", "n_fake", "feature_dim", "feature_space", "floor", "at_floor_size", "memorisation"}
    assert metric_keys | extra_keys == set(report)
    assert set(report["floor"]) == set(report["at_floor_size"]) == metric_keys
    assert set(report["memorisation"]) == {"median_dist_train", "median_dist_heldout", "ratio",
                                           "share_closer_to_train"}
    for key in ("fd", "kid_mean", "swd_mean"):
        assert report["at_floor_size"][key] > report["floor"][key]
    assert json.loads(json.dumps(report)) == report  # plain numbers only
    assert "floor" not in score(real[:50], fake[:50], floor=False)


# --- Inception-v3 FID port --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inception() -> InceptionV3FID:
    return InceptionV3FID().eval()


def test_inception_has_the_fid_layout(inception):
    assert sum(isinstance(m, torch.nn.Conv2d) for m in inception.modules()) == 94
    assert inception.fc.weight.shape == (1008, 2048)
    # torchvision's inception_v3 has 27,161,264 parameters; minus the aux head (98,560 + 2,459,136 + 769,000)
    # plus 8 more classes in fc (8 x 2049) gives the FID network's 23,850,960 (BN running stats excluded)
    assert sum(p.numel() for p in inception.parameters()) == 23_850_960
    assert inception.Mixed_7b.pool == "avg" and inception.Mixed_7c.pool == "max"


def test_load_inception_roundtrip_gives_2048_features(inception, tmp_path):
    state = {key: value for key, value in inception.state_dict().items() if not key.endswith("num_batches_tracked")}
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)  # like older files: no BatchNorm counters
    loaded = load_inception(path)
    images = smooth_images(2, seed=12, size=16)
    with torch.no_grad():
        features = loaded(images)
        assert features.shape == (2, 2048)
        assert torch.allclose(features, inception(images), atol=1e-5)
    assert extract_features(images, loaded).shape == (2, 2048)


def test_load_inception_rejects_a_wrong_state_dict(inception, tmp_path):
    missing = dict(inception.state_dict())
    del missing["Mixed_7c.branch_pool.conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(InceptionWeightsError, match=r"missing\.pth.*1 missing keys.*Mixed_7c\.branch_pool\.conv"
                                                    r"\.weight.*pt_inception-2015-12-05-6726825d\.pth"):
        load_inception(tmp_path / "missing.pth")
    reshaped = dict(inception.state_dict())
    reshaped["fc.weight"] = torch.zeros(1000, 2048)
    reshaped["extra.weight"] = torch.zeros(1)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(InceptionWeightsError, match=r"unexpected keys, first: extra\.weight.*shape mismatches, "
                                                    r"first: fc\.weight \(1000, 2048\) \(expected \(1008, 2048\)\)"):
        load_inception(tmp_path / "reshaped.pth")
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        load_inception(tmp_path / "absent.pth")


# --- the port against references derived without it ------------------------------------------------------------

def test_frechet_distance_matches_scipy_sqrtm_in_64_dimensions():
    """The eigenvalue route against the textbook ``Tr (S_a S_b)^1/2`` through scipy's general ``sqrtm`` (what
    the reference FID code computes), on non-commuting covariances, and a closed form: N(mu, S) against
    N(mu, c^2 S) is ``(1 - c)^2 Tr S``."""
    rng = np.random.default_rng(7)
    d = 64
    A, B = rng.normal(size=(d, 2 * d)), rng.normal(size=(d, 2 * d))
    cov_a, cov_b = A @ A.T / (2 * d), B @ B.T / (2 * d)
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    textbook = (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet_distance_from_moments(mu_a, cov_a, mu_b, cov_b) == pytest.approx(textbook, rel=1e-8)
    c = 1.7
    assert frechet_distance_from_moments(mu_a, cov_a, mu_a, c ** 2 * cov_a) == pytest.approx(
        (1 - c) ** 2 * np.trace(cov_a), rel=1e-8)


def _plain(module: torch.nn.Module) -> torch.nn.Module:
    """Every convolution averages its inputs (weights 1 / fan-in) and every batch norm is the identity, so a
    constant input stays constant wherever no zero padding reaches: outputs can be worked out by hand."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)  # (x - 0) / sqrt(var + eps) = x
    return module.eval()


def test_basic_conv_is_conv_then_tf_batch_norm_then_relu():
    from feedgan.avatars.inception import BasicConv2d

    block = _plain(BasicConv2d(2, 1, 1))
    with torch.no_grad():
        block.bn.running_mean.fill_(0.5)
        block.bn.running_var.fill_(3.999)  # TF's eps 0.001: the scale is 1 / sqrt(3.999 + 0.001) = 1 / 2
        block.bn.weight.fill_(3.0)
        block.bn.bias.fill_(-0.25)
        x = torch.tensor([[[[1.0, -2.0]], [[2.0, 0.0]]]])  # (1, 2, 1, 2): channel means 1.5 and -1
        out = block(x)
    # 3 (1.5 - 0.5) / 2 - 0.25 = 1.25;  3 (-1 - 0.5) / 2 - 0.25 = -2.5 -> ReLU -> 0
    np.testing.assert_allclose(out.numpy().ravel(), [1.25, 0.0], rtol=1e-6)


def test_pool_branches_follow_the_tensorflow_graph(inception):
    """Mixed_5b-7b average-pool without counting the padding; Mixed_7c max-pools. Worked by hand on 5 x 5 maps."""
    five_b, seven_b, seven_c = (_plain(type(b)(*args, **kw)) for b, args, kw in (
        (inception.Mixed_5b, (192,), {"pool_features": 32}),
        (inception.Mixed_7b, (1280,), {"pool": "avg"}),
        (inception.Mixed_7c, (2048,), {"pool": "max"})))
    with torch.no_grad():
        # a constant map: the pool branch (the last 32 channels) is that constant even in the corners, where a
        # pool counting the zero padding would give 4/9 of it
        out = five_b(torch.full((1, 192, 5, 5), 0.6))
        np.testing.assert_allclose(out[0, -32:].numpy(), 0.6, rtol=1e-5)
        np.testing.assert_allclose(out[0, :64].numpy(), 0.6, rtol=1e-5)  # the 1x1 branch, for comparison
        # a spike of 9 in the corner: the average over the valid cells of each 3 x 3 window is 9/4 in the
        # corner, 9/6 beside it on the edge, 9/9 diagonally in; the max pool copies 9 to all three
        spike = torch.zeros(1, 2048, 5, 5)
        spike[:, :, 0, 0] = 9.0
        avg = seven_b(spike[:, :1280])[0, -192:, :2, :2]
        mx = seven_c(spike)[0, -192:, :2, :2]
    np.testing.assert_allclose(avg.numpy(), np.broadcast_to([[9 / 4, 9 / 6], [9 / 6, 9 / 9]], avg.shape), rtol=1e-5)
    np.testing.assert_allclose(mx.numpy(), 9.0, rtol=1e-5)


def _bilinear_half_pixel(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (size, size) bilinear resampling with half-pixel centres (align_corners=False), in numpy."""
    def weights(n_in: int) -> np.ndarray:  # (size, n_in) interpolation matrix
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        M = np.zeros((size, n_in))
        np.add.at(M, (np.arange(size), lo), 1 - frac)
        np.add.at(M, (np.arange(size), hi), frac)
        return M

    return weights(image.shape[0]) @ image @ weights(image.shape[1]).T


def test_network_input_sizes_and_features_follow_the_paper(inception):
    """uint8 pixels map to 2 x / 255 - 1, are resized to 299 x 299 bilinearly, and the feature maps have the
    sizes of Szegedy et al. (2016), Table 1 / the TF graph; the features are the mean of Mixed_7c's output."""
    image = np.array([[[0, 51, 255], [255, 0, 51]]], dtype=np.uint8)[..., None].repeat(3, -1)  # (1, 2, 3, 3)
    seen = {}
    hooks = [getattr(inception, name).register_forward_hook(
        lambda m, args, out, name=name: seen.__setitem__(name, (args[0], out)))
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Mixed_5b",
                     "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")]
    try:
        with torch.no_grad():
            features = inception(image)
    finally:
        for h in hooks:
            h.remove()
    pixels = 2 * image[0, :, :, 0].astype(np.float64) / 255 - 1  # (2, 3): [[-1, -0.6, 1], [1, -1, -0.6]]
    network_input = seen["Conv2d_1a_3x3"][0]
    assert network_input.shape == (1, 3, 299, 299)
    for c in range(3):
        np.testing.assert_allclose(network_input[0, c].numpy(), _bilinear_half_pixel(pixels, 299), atol=1e-5)
    sizes = {name: tuple(out.shape[1:]) for name, (_, out) in seen.items()}
    assert sizes == {"Conv2d_1a_3x3": (32, 149, 149), "Conv2d_2a_3x3": (32, 147, 147), "Conv2d_2b_3x3": (64, 147, 147),
                     "Conv2d_3b_1x1": (80, 73, 73), "Conv2d_4a_3x3": (192, 71, 71), "Mixed_5b": (256, 35, 35),
                     "Mixed_5c": (288, 35, 35), "Mixed_5d": (288, 35, 35), "Mixed_6a": (768, 17, 17),
                     "Mixed_6e": (768, 17, 17), "Mixed_7a": (1280, 8, 8), "Mixed_7b": (2048, 8, 8),
                     "Mixed_7c": (2048, 8, 8)}
    np.testing.assert_allclose(features.numpy(), seen["Mixed_7c"][1].mean(dim=(2, 3)).numpy(), rtol=1e-6)
    assert (features >= 0).all()  # means of ReLU outputs
