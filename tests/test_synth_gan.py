"""The ``gan`` generator: a GAN-learned prior over Mult-VAE codes (feedgan.synth.gan)."""
import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.synth import Profiles
from feedgan.synth.generators import GANGenerator, Generator, IndependentGenerator, VAEGenerator

N_ITEMS = 40
VAE = {"hidden": 32, "latent": 4, "batch_size": 32, "epochs": 40}  # the vae sampler's settings
GAN = {"hidden": 32, "latent": 4, "vae_batch_size": 32, "vae_epochs": 40,  # the same VAE underneath
       "epochs": 600, "batch_size": 64, "g_hidden": 32, "d_hidden": 32}


def two_clusters(n_users: int = 240, seed: int = 0) -> Profiles:
    """Even users touch 3-11 items of the first half of the catalogue, odd users of the second."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    half = N_ITEMS // 2
    for u in range(n_users):
        k = int(rng.integers(3, 12))
        rows += [u] * k
        cols += (rng.choice(half, k, replace=False) + (u % 2) * half).tolist()
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, N_ITEMS))
    return Profiles(np.arange(n_users), np.arange(N_ITEMS), {"interact": X})


def purity(p: Profiles) -> float:
    """Mean share of a user's items in the half of the catalogue they touch most (1: one cluster each)."""
    X = p.union().toarray()
    a, b = X[:, :N_ITEMS // 2].sum(1), X[:, N_ITEMS // 2:].sum(1)
    return float(np.mean(np.maximum(a, b) / np.maximum(a + b, 1)))


@pytest.fixture(scope="module")
def train():
    return two_clusters()


@pytest.fixture(scope="module")
def gan(train):
    return GANGenerator(**GAN).fit(train, seed=0)


def test_gan_users_keep_to_one_cluster_better_than_the_gaussian_prior(train, gan):
    """Real users keep to one cluster (purity 1). The independent sampler mixes them (about 0.65); a
    Gaussian over the VAE's codes puts users between the clusters; G's codes, learned against the
    train users' codes, fall on the clusters."""
    assert purity(train) == 1.0
    floor = purity(IndependentGenerator().fit(train, seed=0).sample(400, seed=1))
    gaussian = purity(VAEGenerator(**VAE).fit(train, seed=0).sample(400, seed=1))
    learned = purity(gan.sample(400, seed=1))
    assert floor < 0.7
    assert learned > gaussian + 0.03 and learned > 0.93


def test_gan_save_and_load_give_the_same_users(gan, tmp_path):
    gan.save(tmp_path / "g")
    back = Generator.load(tmp_path / "g")
    assert type(back) is GANGenerator and back.get_params() == gan.get_params()
    a, b = gan.sample(100, seed=4), back.sample(100, seed=4)
    assert (a.union() != b.union()).nnz == 0
    assert (a.union() != gan.sample(100, seed=5).union()).nnz > 0


def test_gan_refuses_an_unknown_kind_of_real_code(train):
    with pytest.raises(ValueError, match="real_codes must be 'mean' or 'sample'"):
        GANGenerator(**{**GAN, "real_codes": "median"}).fit(train, seed=0)
