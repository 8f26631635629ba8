"""What keeps repeated work out of a run: numba's compiled code cached across processes, the
describers that need no network run beside it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest


def test_numba_keeps_compiled_code_in_the_user_cache_across_processes_even_unasked(tmp_path):
    env = {**os.environ, "VEHICLUST_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NUMBA_CACHE_DIR", None)
    module = tmp_path / "compiled.py"  # like umap's functions: numba-compiled, not marked cache=True
    module.write_text("import numba\n@numba.njit\ndef double(x):\n    return 2 * x\n"
                      "@numba.njit(fastmath=True)\ndef triple(x):\n    return 3 * x\n")
    code = ("from vehiclust.thirdparty import configure_process\nconfigure_process()\n"
            "import compiled\nprint(compiled.double(21), compiled.triple(2))\n"
            "print(compiled.double.stats.cache_hits and 1, compiled.triple.stats.cache_hits and 1)\n")
    printed = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        printed.append(done.stdout.split("\n")[:2])
        assert printed[-1][0] == "42 6", done.stderr
    assert printed[0][1] != "1 1" and printed[1][1] == "1 1"  # compiled once, read back by the next process
    numba_cache = tmp_path / "cache" / "third_party" / "numba"
    assert list(numba_cache.rglob("*.nbi")) and list(numba_cache.rglob("*.nbc"))
    assert not (tmp_path / "__pycache__").exists() or not list((tmp_path / "__pycache__").glob("*.nbi"))


class _WaitsForTheOther:
    """A describer that can only finish while the other one runs at the same time."""

    input_size = 8

    def __init__(self, name, barrier):
        self.outputs, self.name, self.barrier = {name: 1}, name, barrier

    def describe(self, images):
        self.barrier.wait(timeout=10)  # raises BrokenBarrierError when run one after the other
        return {self.name: np.full((len(images), 1), images.mean())}


def test_numpy_describers_run_beside_the_network_and_give_the_same_matrices(tmp_path):
    import threading
    from types import SimpleNamespace

    from vehiclust.describe.extract import Extraction, Planned, describe_chunk

    barrier = threading.Barrier(2)
    network = Planned(SimpleNamespace(backbone="efficientnet_lite0", needs_original=False),
                      _WaitsForTheOther("net", barrier))
    colour = Planned(SimpleNamespace(backbone="", needs_original=False), _WaitsForTheOther("colour", barrier))
    parts = {"net": tmp_path / "net", "colour": tmp_path / "colour"}
    work = Extraction([network, colour], ["net", "colour"], parts, [(0, 4)], batch_size=4)
    images = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    describe_chunk(work, 0, {8: images}, {})
    for name in ("net", "colour"):
        stored = np.load(parts[name] / "part_000000.npy")
        assert stored.shape == (4, 1) and np.allclose(stored, images.mean())


@pytest.mark.slow
def test_the_2d_and_3d_umap_maps_share_one_neighbour_search(monkeypatch):
    import umap.umap_
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from vehiclust.report import maps

    searches = []
    search = maps.umap_neighbour_graph
    monkeypatch.setattr(maps, "umap_neighbour_graph", lambda *a, **kw: searches.append(1) or search(*a, **kw))
    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_pynndescent)
    X, labels = make_blobs(maps.UMAP_EXACT_BELOW + 200, 10, centers=6, random_state=0)
    reduced, fitted, settings = X.astype(np.float32), np.ones(len(X), bool), maps.MapSettings()
    graph = maps.sample_graph(reduced, settings)
    coords = {dims: maps.embed(reduced, fitted, dims, settings, graph=graph) for dims in (2, 3)}
    assert len(searches) == 1
    for dims, xy in coords.items():
        assert xy.shape == (len(X), dims) and np.isfinite(xy).all()
        assert cross_val_score(KNeighborsClassifier(10), xy, labels, cv=3).mean() > 0.98  # blobs stay apart
    assert maps.sample_graph(reduced[:100], settings) is None  # umap's exact path below 4096 rows


def no_pynndescent(*args, **kwargs):
    raise AssertionError("pynndescent's search (compiled by numba in every process) was called")


def test_the_sweep_s_umap_is_fitted_on_the_exact_neighbour_graph(monkeypatch):
    import umap
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from vehiclust.cluster.backends import UMAP_EXACT_BELOW, knn_search, umap_neighbour_graph
    from vehiclust.cluster.preprocess import UMAPEmbed

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_pynndescent)
    X, labels = make_blobs(UMAP_EXACT_BELOW + 200, 12, centers=5, random_state=1)
    X = X.astype(np.float32)
    indices, distances, _ = umap_neighbour_graph(X, 15)
    brute = np.sort(np.linalg.norm(X[:50, None] - X[None], axis=2), axis=1)[:, :15]
    np.testing.assert_allclose(distances[:50], brute, rtol=1e-4, atol=1e-4)  # exact, itself first
    assert (indices[:, 0] == np.arange(len(X))).mean() > 0.99
    embedding = UMAPEmbed(n_components=4, n_neighbors=15).fit(X).embedding_
    assert cross_val_score(KNeighborsClassifier(10), embedding, labels, cv=3).mean() > 0.98
    assert umap_neighbour_graph(X[:100], 15) == (None, None, None)  # umap-learn's exact path
    assert knn_search(X[:10], X[:10], 1)[1][:, 0].tolist() == list(range(10))


def test_the_runs_of_one_space_share_the_silhouette_distances_and_score_the_same(monkeypatch):
    import sklearn.metrics

    from vehiclust.cluster.metrics import silhouette_on_samples, silhouettes_on_samples
    from vehiclust.cluster.preprocess import Space

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(1500, 16)) for c in (0, 4, 8)]).astype(np.float32)
    space = Space("l2+pca", X, {})
    computed = []
    real = sklearn.metrics.pairwise_distances
    monkeypatch.setattr(sklearn.metrics, "pairwise_distances", lambda A: computed.append(len(A)) or real(A))
    family = [rng.integers(0, k, len(X)) for k in (2, 3, 5, 8, 300, 400)]  # two products of <= 512 columns
    noisy = np.where(np.arange(len(X)) % 7 == 0, -1, rng.integers(0, 3, len(X)))  # other rows clustered
    one_label = np.zeros(len(X), dtype=np.int64)  # no silhouette: NaN, as alone
    together = silhouettes_on_samples(X, [*family, noisy, one_label], 1000, 3, 0, space.silhouettes)
    for labels, shared in zip([*family, noisy, one_label], together):
        alone = silhouette_on_samples(X, labels, 1000, 3, 0)  # scikit-learn's own, one call each
        assert shared.keys() == alone.keys()
        np.testing.assert_equal(list(shared.values()), list(alone.values()))  # to the bit
    assert computed == [1000] * 6  # one matrix per sample of each set of clustered rows, not per run
    assert silhouette_on_samples(X, noisy, 1000, 3, 0, space.silhouette) == \
        silhouette_on_samples(X, noisy, 1000, 3, 0)
