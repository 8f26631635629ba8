"""The Ray executor on a real multi-process cluster (a head and two worker nodes of one CPU
each, ``ray.cluster_utils.Cluster``): extraction, a worker node killed mid-run, assignment and
outlier scoring equal to the local executor's, the cluster metrics' sharded sums, the actor
pool kept across maps, a node with GPUs declared (none real); and, without a cluster: the
message when Ray is not installed or the address does not answer, switching executor reusing
the stored stages."""

from __future__ import annotations

import builtins
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vehiclust.collection import ingest
from vehiclust.describe import DescribeSettings, describe
from vehiclust.errors import VehiclustError
from vehiclust.executor import ExecutorSettings, ShardJob, create_executor
from vehiclust.runfolder import RunFolder

HAS_RAY = __import__("importlib").util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'vehiclust[ray]')")

DESCRIPTORS = ["color_hist"]
CHUNK_ROWS = 32
N_IMAGES = 300


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A few hundred demo images, plus three files that cannot be decoded (invalid rows)."""
    from vehiclust.demo.build import build_demo

    root = tmp_path_factory.mktemp("ray-demo")
    collection = build_demo(root / "demo", N_IMAGES, seed=2)
    good = next(iter(sorted(Path(collection.root).rglob("*.jpg")))).read_bytes()
    bad = Path(collection.root) / "zz_bad"
    bad.mkdir()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (bad / "corrupt.jpg").write_bytes(good[:200] + bytes(range(256)) * 8)
    (bad / "not_an_image.jpg").write_bytes(b"this is a text file, not a picture\n" * 20)
    return Path(collection.root)


def described(images: Path, out: Path, executor: ExecutorSettings) -> RunFolder:
    run = RunFolder(out)
    ingest(images, run)
    describe(run, DESCRIPTORS, DescribeSettings(chunk_rows=CHUNK_ROWS, device="cpu", executor=executor))
    return run


@pytest.fixture(scope="module")
def local_run(images, tmp_path_factory) -> RunFolder:
    return described(images, tmp_path_factory.mktemp("local") / "run", ExecutorSettings("local"))


class RayCluster:
    """A head (no CPUs: the driver only) and two worker nodes of one CPU each, its session files
    under a fresh tmp folder; shut down by the fixture's finalizer."""

    def __init__(self, nodes: tuple[dict, ...] = ({"num_cpus": 1}, {"num_cpus": 1})):
        import ray
        from ray.cluster_utils import Cluster

        self.ray = ray
        self._print = builtins.print  # ray.shutdown() leaves builtins.print patched (see shutdown)
        self.tmp = tempfile.mkdtemp(prefix="vr")  # short: Ray's socket paths must fit 107 bytes
        self._previous = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "RAY_AUTH_TOKEN")}
        os.environ["RAY_TMPDIR"] = self.tmp
        os.environ["RAY_AUTH_TOKEN"] = "vehiclust-test-" + os.urandom(16).hex()  # no token file in the home
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        self.workers = [self.cluster.add_node(**node) for node in nodes]
        ray.init(address=self.cluster.address, logging_level="ERROR", log_to_driver=False)
        self.cluster.wait_for_nodes()

    def node_of(self, short_id: str):
        return next(n for n in self.workers if n.node_id.startswith(short_id))

    def kill(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def shutdown(self) -> None:
        self.ray.shutdown()
        self.cluster.shutdown()
        # Ray 2.60's shutdown leaves a Python function as builtins.print; numba then cannot type
        # print in functions it compiles later in this process (pynndescent's nn_descent failed
        # in a later test file). A CLI run shuts Ray down only at exit, so only tests need this.
        builtins.print = self._print
        for name, value in self._previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def live_cluster(request) -> dict:
    """The one cluster this module's driver is connected to, shut down when the module ends."""
    holder: dict = {"cluster": None}

    def stop() -> None:
        if holder["cluster"] is not None:
            holder["cluster"].shutdown()
            holder["cluster"] = None

    request.addfinalizer(stop)
    holder["stop"] = stop
    return holder


@pytest.fixture
def cluster(live_cluster) -> RayCluster:
    """Shared by the tests that leave it as it is."""
    if live_cluster["cluster"] is None:
        live_cluster["cluster"] = RayCluster()
    return live_cluster["cluster"]


@pytest.fixture
def cluster_to_break(live_cluster) -> RayCluster:
    """A cluster of its own (one driver connection at a time: the shared one stops first)."""
    live_cluster["stop"]()
    live_cluster["cluster"] = RayCluster()
    yield live_cluster["cluster"]
    live_cluster["stop"]()


@pytest.fixture
def gpu_cluster(live_cluster) -> RayCluster:
    """One worker node that declares two GPUs it does not have (and three CPUs), as Ray allows."""
    live_cluster["stop"]()
    live_cluster["cluster"] = RayCluster(({"num_cpus": 3, "num_gpus": 2},))
    yield live_cluster["cluster"]
    live_cluster["stop"]()


def assert_same_descriptors(run: RunFolder, reference: RunFolder) -> None:
    for name in DESCRIPTORS:
        got, expected = np.load(run.descriptor_path(name)), np.load(reference.descriptor_path(name))
        assert got.shape == expected.shape == (N_IMAGES + 3, got.shape[1])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert run.descriptor_meta(name)["invalid"].keys() == reference.descriptor_meta(name)["invalid"].keys()
        assert len(reference.descriptor_meta(name)["invalid"]) == 3


def leftovers(run: RunFolder) -> list[Path]:
    return [p for p in run.root.rglob("*") if p.name.endswith(".tmp") or ".parts" in p.parts]


@needs_ray
@pytest.mark.slow
def test_cluster_describes_like_local_and_records_its_workers(images, local_run, cluster, tmp_path):
    run = described(images, tmp_path / "run", ExecutorSettings("ray"))
    assert_same_descriptors(run, local_run)
    meta = run.descriptor_meta(DESCRIPTORS[0])
    assert meta["executor"] == "ray"
    assert len(meta["nodes"]) == 2 and len(meta["workers"]) == 2  # both worker nodes did shards
    assert all(w["shards"] >= 1 for w in meta["workers"])
    shards = sorted(s[0] for s in meta["shard_seconds"])
    assert shards == list(range(-(-(N_IMAGES + 3) // CHUNK_ROWS)))  # every shard once
    assert local_run.descriptor_meta(DESCRIPTORS[0])["executor"] == "local"
    assert leftovers(run) == []


@needs_ray
@pytest.mark.slow
def test_assignment_and_outlier_scores_on_the_cluster_equal_local(cluster, tmp_path):
    from sklearn.cluster import KMeans

    from vehiclust.cluster.preprocess import build_spaces
    from vehiclust.cluster.settings import ClusterSettings
    from vehiclust.cluster.sweep import assign
    from vehiclust.cluster.algorithms import get_algorithm
    from vehiclust.executor.rows import assign_rows, score_rows
    from vehiclust.outliers.detectors import DetectorSettings, score_descriptor

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(5, 24))
    matrix = (centres[rng.integers(0, 5, 4000)] + rng.normal(size=(4000, 24))).astype(np.float32)
    matrix[:15] += 12  # a few outliers
    np.save(tmp_path / "matrix.npy", matrix)
    on_cluster = ExecutorSettings("ray", scratch=str(tmp_path))

    space = build_spaces(matrix, np.arange(len(matrix)), ("std+pca",), ClusterSettings(), lambda _: None)[0]
    fit_idx = space.sample(1000, 0)
    model = KMeans(5, n_init=2, random_state=0).fit(space.X[fit_idx])
    for kind in ("predict", "centroid", "knn"):
        algorithm = replace(get_algorithm("kmeans"), assign=kind)
        expected = assign(space, algorithm, model, fit_idx, model.labels_)
        got = assign_rows(space.X, kind, model, fit_idx, model.labels_, on_cluster)
        np.testing.assert_array_equal(got, expected)

    rows = np.flatnonzero(rng.random(len(matrix)) > 0.1)
    settings = DetectorSettings(detectors=("knn", "lof", "iforest", "ecod"), fit_sample=1500, pca_components=8)
    expected = score_descriptor(matrix, rows, settings)
    got, shards = score_rows(tmp_path / "matrix.npy", rows, settings, tmp_path / "scores.npy", on_cluster,
                             shard_rows=500)
    for name in settings.detectors:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert len(shards["workers"]) == 2 and len(shards["shard_seconds"]) == -(-len(rows) // 500)
    # a stored matrix scored beside itself: files of the names the scoring once used stay
    from vehiclust.executor.rows import score_stored_rows

    planted = [tmp_path / ".matrix-detector-scores.npy", tmp_path / ".matrix-detector-scores.shards" / "notes.txt"]
    planted[1].parent.mkdir()
    for path in planted:
        path.write_text("keep me")
    stored = score_stored_rows(np.load(tmp_path / "matrix.npy", mmap_mode="r"), rows,
                               replace(settings, executor=on_cluster))
    for name in settings.detectors:
        np.testing.assert_allclose(stored[name], expected[name], rtol=1e-5, atol=1e-6)
    assert all(path.read_text() == "keep me" for path in planted)
    assert sorted(p.name for p in tmp_path.glob(".matrix-detector-scores*")) == [
        ".matrix-detector-scores.npy", ".matrix-detector-scores.shards"]  # its own folder is gone


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(VehiclustError) as caught:
        create_executor(ExecutorSettings("ray"))
    message = str(caught.value)
    assert "\n" not in message and "pip install 'vehiclust[ray]'" in message


def test_without_ray_the_command_line_stops_with_one_line(monkeypatch, photo_folder, tmp_path):
    from typer.testing import CliRunner

    from vehiclust.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["describe", str(photo_folder), "--out", str(tmp_path / "run"),
                                      "--descriptors", "color_hist", "--executor", "ray"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'vehiclust[ray]'" in lines[0], result.output
    assert "Traceback" not in result.output


def test_an_unknown_executor_is_named():
    with pytest.raises(VehiclustError, match="executor"):
        create_executor(ExecutorSettings("spark"))


def test_local_executor_maps_every_shard_once_and_skips_stored_ones(tmp_path):
    from vehiclust.executor.rows import NearestCentre, map_rows

    matrix = np.random.default_rng(1).normal(size=(1000, 6)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    centres = matrix[:4]
    labels, shards = map_rows(tmp_path / "m.npy", NearestCentre(centres), tmp_path / "labels.npy", shard_rows=300)
    expected = np.argmin(((matrix[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(labels, expected)
    assert [s[0] for s in shards["shard_seconds"]] == [0, 1, 2, 3] and shards["executor"] == "local"
    assert not (tmp_path / ".labels.shards").exists()


def test_a_descriptors_json_and_the_report_say_who_computed_its_shards(photo_folder, tmp_path):
    from vehiclust.executor.base import executor_lines

    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    describe(run, DESCRIPTORS, DescribeSettings(chunk_rows=16, device="cpu"))
    meta = run.descriptor_meta(DESCRIPTORS[0])
    n_shards = -(-len(run.load_collection()) // 16)
    assert meta["executor"] == "local" and meta["workers"][0]["pid"] == os.getpid()
    assert meta["workers"][0]["shards"] == n_shards == len(meta["shard_seconds"])
    assert all(seconds > 0 for _, _, seconds, _ in meta["shard_seconds"])
    [line] = executor_lines(run)
    assert line.startswith(f"{DESCRIPTORS[0]}: local executor, 1 node(s), 1 worker process(es), {n_shards} shards")


@needs_ray
@pytest.mark.slow
def test_the_cluster_and_outlier_stages_on_ray_equal_local(local_run, cluster, tmp_path, monkeypatch):
    from vehiclust.executor import rows as executor_rows
    from vehiclust.cluster import ClusterSettings
    from vehiclust.cluster import cluster as cluster_stage
    from vehiclust.runfolder import CLUSTERING
    from vehiclust.outliers.detectors import DetectorSettings
    from vehiclust.outliers.evidence import detector_z

    # fitted on 150 of the 300 valid rows: the others are assigned (k-means predicts, ward's by k-NN vote)
    settings = ClusterSettings(algorithms=("kmeans", "ward"), preprocessing=("l2+pca",), k_values=(3, 5),
                               fit_sample=150, quadratic_sample=150, stability_repeats=1)
    runs, sharded_preprocessing = {}, []
    transformed_rows = executor_rows.transformed_rows
    monkeypatch.setattr(executor_rows, "transformed_rows",
                        lambda *a: sharded_preprocessing.append(a[3].kind) or transformed_rows(*a))
    for kind in ("local", "ray"):
        run = RunFolder(tmp_path / kind)
        shutil.copytree(local_run.root, run.root)
        executor = ExecutorSettings(kind, scratch=str(tmp_path))
        runs[kind] = cluster_stage(run, DESCRIPTORS, replace(settings, executor=executor))
        assert run.stage_record("cluster")["executor"] == kind
        with np.load(CLUSTERING.path(run, DESCRIPTORS[0])) as selected:
            runs[kind + "_labels"] = selected["labels"]
        usable = np.ones(N_IMAGES + 3, dtype=bool)
        usable[[int(r) for r in run.invalid_rows(DESCRIPTORS[0])]] = False
        runs[kind + "_z"] = detector_z(run.load_descriptor(DESCRIPTORS[0]), usable,
                                       DetectorSettings(fit_sample=120, executor=executor))
    assert sharded_preprocessing == ["ray"]  # the l2+pca transform of every row ran as shards on the cluster
    assert (runs["local"]["assignment"] != "none").all()
    np.testing.assert_array_equal(runs["ray_labels"], runs["local_labels"])
    columns = ["algorithm", "params", "n_clusters", "calinski_harabasz", "silhouette", "stability"]
    np.testing.assert_array_equal(runs["ray"][columns].to_numpy(), runs["local"][columns].to_numpy())
    for name, z in runs["local_z"].items():
        np.testing.assert_allclose(runs["ray_z"][name], z, rtol=1e-5, atol=1e-6)


def test_spaces_over_the_memory_budget_are_memory_mapped_with_the_same_results(local_run, tmp_path, monkeypatch):
    """A reduced space above ``IN_MEMORY_SPACE_BYTES`` lives in a scratch file (the workers map
    it as it is: never copied); the sweep's results are those of the in-memory space, and the
    files are gone when the stage ends."""
    from vehiclust.cluster import ClusterSettings
    from vehiclust.cluster import cluster as cluster_stage
    from vehiclust.cluster import preprocess
    from vehiclust.executor.rows import stored_rows
    from vehiclust.runfolder import CLUSTERING

    settings = ClusterSettings(algorithms=("kmeans", "ward"), preprocessing=("l2+pca", "l2+pca+umap"),
                               k_values=(3, 5), fit_sample=150, quadratic_sample=150, stability_repeats=1,
                               umap_sample=250, umap_neighbors=10,
                               executor=ExecutorSettings(scratch=str(tmp_path / "scratch")))
    (tmp_path / "scratch").mkdir()
    results = {}
    for budget in (preprocess.IN_MEMORY_SPACE_BYTES, 0):
        monkeypatch.setattr(preprocess, "IN_MEMORY_SPACE_BYTES", budget)
        run = RunFolder(tmp_path / f"budget{budget}")
        shutil.copytree(local_run.root, run.root)
        runs = cluster_stage(run, DESCRIPTORS, settings)
        with np.load(CLUSTERING.path(run, DESCRIPTORS[0])) as selected:
            results[budget] = runs.drop(columns=["seconds", "preprocess_seconds"], errors="ignore"), selected["labels"]
        assert not any(p.name.startswith("vehiclust-rows-") for p in (tmp_path / "scratch").iterdir())
    (memory, labels), (mapped, mapped_labels) = results.values()
    assert set(memory["preprocessing"]) == {"l2+pca", "l2+pca+umap"}  # UMAP fitted on 250, 50 rows placed
    np.testing.assert_array_equal(mapped_labels, labels)
    pd.testing.assert_frame_equal(mapped, memory)
    matrix = local_run.load_descriptor(DESCRIPTORS[0])
    rows = preprocess.valid_rows(matrix, local_run.invalid_rows(DESCRIPTORS[0]))
    space = preprocess.build_spaces(matrix, rows, ("l2+pca",), settings)[0]
    assert isinstance(space.X, np.memmap) and stored_rows(space.X, None) == Path(space.X.filename)


def demo_space_and_labels(run: RunFolder) -> tuple[np.ndarray, np.ndarray]:
    """The l2+pca space of the demo images' colour histograms and a k-means labelling of it
    with a few rows marked noise (as the density-based algorithms leave them)."""
    from sklearn.cluster import KMeans

    from vehiclust.cluster.preprocess import build_spaces, valid_rows
    from vehiclust.cluster.settings import ClusterSettings

    matrix = run.load_descriptor(DESCRIPTORS[0])
    rows = valid_rows(matrix, run.invalid_rows(DESCRIPTORS[0]))
    X = build_spaces(matrix, rows, ("l2+pca",), ClusterSettings(), lambda _: None)[0].X
    labels = KMeans(6, n_init=2, random_state=0).fit_predict(X)
    labels[::17] = -1
    return X, labels


def test_chunked_cluster_metrics_equal_scikit_learns_on_real_rows(local_run):
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    from vehiclust.cluster.metrics import cluster_geometry, clustering_metrics, internal_metrics

    X, labels = demo_space_and_labels(local_run)
    member = labels >= 0
    chunked = clustering_metrics(X, labels, block_rows=37)  # 9 blocks, sums added across them
    assert chunked["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(X[member], labels[member]), rel=1e-6)
    assert chunked["davies_bouldin"] == pytest.approx(davies_bouldin_score(X[member], labels[member]), rel=1e-6)
    in_memory = internal_metrics(X, labels, *cluster_geometry(X, labels))
    assert chunked.keys() == in_memory.keys()
    for name, value in in_memory.items():
        assert chunked[name] == pytest.approx(value, rel=1e-5), name
    assert chunked["noise_share"] == pytest.approx(1 - member.mean())




@needs_ray
@pytest.mark.slow
def test_cluster_metrics_as_a_sharded_map_on_the_cluster_equal_local(local_run, cluster, tmp_path):
    from vehiclust.cluster.metrics import clustering_metrics

    X, labels = demo_space_and_labels(local_run)
    expected = clustering_metrics(X, labels)
    got = clustering_metrics(X, labels, ExecutorSettings("ray", scratch=str(tmp_path)), block_rows=64)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    assert [p.name[:15] for p in tmp_path.iterdir()] == ["vehiclust-rows-"]  # the shards' work folders are gone


@needs_ray
@pytest.mark.slow
def test_later_maps_reuse_the_actors_and_each_job_loads_its_own_state(cluster, tmp_path):
    from vehiclust.executor.rows import NearestCentre, map_rows

    matrix = np.random.default_rng(3).normal(size=(600, 4)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    on_cluster = ExecutorSettings("ray", scratch=str(tmp_path))
    workers, results = [], []
    for centres in (matrix[:3], matrix[3:8]):  # two jobs: each actor must apply the second one's centres
        labels, shards = map_rows(tmp_path / "m.npy", NearestCentre(centres), tmp_path / "labels.npy", on_cluster,
                                  shard_rows=100)
        workers.append(sorted(w["pid"] for w in shards["workers"]))
        results.append(np.array(labels))
        expected = np.argmin(((matrix[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        np.testing.assert_array_equal(results[-1], expected)
    assert len(workers[0]) == 2 and workers[1] == workers[0]  # no actor started again


class CrashingJob(ShardJob):
    """Shard ``crash`` kills its worker process (``times`` times, counted in files), the others
    write a marker: what a worker lost mid-shard looks like to the executor."""

    def __init__(self, folder: Path, crash: int, times: int):
        self.folder, self.crash, self.times = str(folder), crash, times

    def stored(self, index: int) -> bool:
        return (Path(self.folder) / f"{index}.done").exists()

    def run(self, index: int) -> dict:
        crashes = list(Path(self.folder).glob(f"{index}.crash*"))
        if index == self.crash and len(crashes) < self.times:
            (Path(self.folder) / f"{index}.crash{len(crashes)}").touch()
            os._exit(1)
        (Path(self.folder) / f"{index}.done").write_text("done")
        return {"rows": 1}


@needs_ray
@pytest.mark.slow
def test_a_shard_whose_worker_dies_is_retried_and_one_that_always_kills_it_is_named(cluster, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    executor = create_executor(ExecutorSettings("ray"))
    (tmp_path / "once").mkdir()
    rows = executor.map(CrashingJob(tmp_path / "once", crash=2, times=1), list(range(6)))
    assert sorted(r["shard"] for r in rows) == list(range(6))
    assert len(list((tmp_path / "once").glob("2.crash*"))) == 1
    (tmp_path / "always").mkdir()
    with pytest.raises(VehiclustError, match="shard 1 failed on 3 workers"):
        executor.map(CrashingJob(tmp_path / "always", crash=1, times=99), [0, 1, 2])


LOCAL_INSTANCE_RUN = """
import sys, numpy as np
from pathlib import Path
from vehiclust.executor import ExecutorSettings
from vehiclust.executor.rows import NearestCentre, map_rows
work = Path(sys.argv[1])
np.save(work / "m.npy", np.arange(40, dtype=np.float32).reshape(20, 2))
labels, shards = map_rows(work / "m.npy", NearestCentre(np.array([[0.0, 0.0], [40.0, 40.0]])), work / "l.npy",
                          ExecutorSettings("ray", workers=2), shard_rows=5)
print(len(shards["workers"]), labels.tolist())
"""


@needs_ray
@pytest.mark.slow
def test_a_local_ray_instance_starts_and_stops_with_the_run_and_writes_nothing_home(tmp_path):
    import subprocess

    home, ray_tmp, work = tmp_path / "home", Path(tempfile.mkdtemp(prefix="vr")), tmp_path / "work"
    home.mkdir(), work.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_AUTH_TOKEN", None)
    try:
        done = subprocess.run([sys.executable, "-c", LOCAL_INSTANCE_RUN, str(work)], env=env, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        workers, labels = done.stdout.strip().splitlines()[-1].split(" ", 1)
        assert workers == "2" and labels == str([0] * 10 + [1] * 10)
        assert list(home.iterdir()) == []  # no ~/.ray, no token file
        assert (ray_tmp / "vehiclust-ray").is_dir()  # the session went under the tmp folder
        alive = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout.split()
        assert alive == []  # no raylet, GCS or worker of that session outlived the run
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


class RefusingJob(ShardJob):
    """Its workers meet input they refuse (as a missing weights file would be)."""

    def stored(self, index: int) -> bool:
        return False

    def setup(self, threads):
        raise VehiclustError("weights.onnx: not found; put it in the models folder")

    def run(self, index: int) -> dict:
        return {}


@needs_ray
@pytest.mark.slow
def test_a_workers_refusal_reaches_the_driver_as_its_one_line(cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(VehiclustError) as caught:
        create_executor(ExecutorSettings("ray")).map(RefusingJob(), [0, 1])
    assert str(caught.value) == "weights.onnx: not found; put it in the models folder"


@needs_ray
@pytest.mark.slow
def test_a_worker_node_killed_mid_run_loses_no_row(images, local_run, cluster_to_break, tmp_path):
    cluster = cluster_to_break
    stored: list[dict] = []

    def kill_after_three(row: dict) -> None:  # deterministic: after the third stored shard
        stored.append(row)
        if len(stored) == 3:
            cluster.kill(cluster.node_of(row["node"]))

    run = described(images, tmp_path / "run", ExecutorSettings("ray", after_shard=kill_after_three))
    assert_same_descriptors(run, local_run)
    assert len(cluster.workers) == 1
    killed_node = stored[2]["node"]
    later = [r["node"] for r in stored[3:]]
    # the rest ran on the surviving node (a shard the dying node's worker was already given may
    # still have finished there: a race Ray allows, and no extra copy results)
    assert set(later) - {killed_node}, stored
    n_shards = -(-(N_IMAGES + 3) // CHUNK_ROWS)
    computed = [r["shard"] for r in stored if not r.get("reused")]
    assert sorted(computed) == list(range(n_shards)), stored  # every shard computed once
    assert leftovers(run) == []


def test_switching_executor_reuses_the_stored_cluster_and_outlier_stages(photo_folder, tmp_path):
    """The executor does not change results, so it is no part of a stage key: a run on another
    executor finds the stages current, and their records still name the executor that ran them."""
    from vehiclust.cluster import ClusterSettings
    from vehiclust.cluster.stage import ClusterStage
    from vehiclust.outliers.settings import OutlierSettings
    from vehiclust.outliers.stage import OutlierStage
    from vehiclust.pipeline import run_stages
    from vehiclust.stage import RunContext

    def stages(executor: ExecutorSettings) -> list:
        settings = ClusterSettings(algorithms=("kmeans",), preprocessing=("l2+pca",), k_values=(2, 3),
                                   stability_repeats=1, executor=executor)
        outlier_settings = OutlierSettings(checks=("isolated",))
        outlier_settings = replace(outlier_settings, detectors=replace(outlier_settings.detectors, executor=executor))
        return [ClusterStage(settings), OutlierStage(outlier_settings)]

    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    describe(run, DESCRIPTORS, DescribeSettings(device="cpu"))
    ctx = RunContext(run, descriptors=DESCRIPTORS)
    assert run_stages(stages(ExecutorSettings("local")), ctx) == ["cluster", "outliers"]
    stored = {name: run.stage_record(name) for name in ("cluster", "outliers")}
    on_ray = ExecutorSettings("ray", ray_address="127.0.0.1:1", workers=3)  # never reached: nothing reruns
    assert run_stages(stages(on_ray), ctx) == []
    for name, record in stored.items():
        assert run.stage_record(name) == record and record["executor"] == "local"
    changed = stages(on_ray)[0]
    changed.settings = replace(changed.settings, k_values=(2, 4))
    assert changed.key(ctx) != stored["cluster"]["fingerprint"]  # a setting that changes results still counts


@needs_ray
def test_an_unreachable_ray_address_is_one_line_in_bounded_time(photo_folder, tmp_path):
    import socket
    import time

    from typer.testing import CliRunner

    from vehiclust.cli import app

    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(VehiclustError) as caught:
        create_executor(ExecutorSettings("ray", ray_address=f"127.0.0.1:{port}"))
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message and f"--ray-address 127.0.0.1:{port}" in message
    assert "ray start --head" in message
    with pytest.raises(VehiclustError, match="expected HOST:PORT"):
        create_executor(ExecutorSettings("ray", ray_address="headnode"))
    result = CliRunner().invoke(app, ["describe", str(photo_folder), "--out", str(tmp_path / "run"), "--descriptors",
                                      "color_hist", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "ray start --head" in lines[0], result.output
    assert not (tmp_path / "run").exists()  # stopped before any work


def _describe_on_the_cpu_anyway():
    """DescribeShards that records the device its GPU actor was given, then runs the model on
    the CPU (the GPUs of the test cluster are declared, not real)."""
    from vehiclust.executor.describe_job import DescribeShards

    class OnCpu(DescribeShards):
        def device_settings(self, settings):
            given = super().device_settings(settings)
            self.given_device = given.device
            return replace(given, device="cpu", batch_size=settings.batch_size)

        def run(self, index: int) -> dict:
            return {**super().run(index), "given_device": self.given_device}

    return OnCpu


@needs_ray
@pytest.mark.slow
def test_with_gpus_declared_the_pool_has_one_actor_per_gpu_each_given_its_device(images, local_run, gpu_cluster,
                                                                                  tmp_path, monkeypatch):
    import ray.cloudpickle

    import vehiclust.executor.describe_job as describe_job

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    monkeypatch.setattr(describe_job, "DescribeShards", _describe_on_the_cpu_anyway())
    rows: list[dict] = []
    run = described(images, tmp_path / "run", ExecutorSettings("ray", after_shard=rows.append))
    assert_same_descriptors(run, local_run)
    by_worker = {row["pid"]: row for row in rows}
    assert len(by_worker) == 2  # one actor per GPU, though the node has a third CPU
    assert sorted(tuple(row["gpus"]) for row in by_worker.values()) == [(0,), (1,)]
    for row in rows:
        assert row["given_device"] == "cuda" and row["device"] == "cpu"  # the test's override
        assert row["cuda_visible_devices"] == str(row["gpus"][0])  # so cuda is the actor's own GPU
    workers = run.descriptor_meta(DESCRIPTORS[0])["workers"]
    assert sorted(w["gpus"][0] for w in workers) == [0, 1]
