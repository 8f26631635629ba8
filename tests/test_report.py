"""The report stage: maps, thumbnails, generated descriptions (true to their numbers), the
executed notebook and the page itself in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from vehiclust.cluster import ClusterSettings
from vehiclust.compare.best import all_runs
from vehiclust.errors import VehiclustError
from vehiclust.pipeline import RunSettings, run_pipeline
from vehiclust.report import descriptions as desc
from vehiclust.report.maps import MapSettings, compute_maps, load_map
from vehiclust.report.mapview import display_rows, encode_categories, quantise
from vehiclust.report.notebook import write_notebook
from vehiclust.report.thumbnails import ensure_thumbnails, thumbnail_path
from vehiclust.runfolder import MAP_META, RunFolder

SECTIONS = ("summary", "map-section", "clusters", "descriptors", "outliers", "runs", "timings")


# -- maps ------------------------------------------------------------------------------------

def _vector_run(tmp_path: Path, n: int = 600, invalid: tuple[int, ...] = ()) -> RunFolder:
    """Three well separated blobs in 20 dimensions (rows in blob order), stored as a descriptor."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 20))
    matrix = np.concatenate([c + rng.normal(0, 1, (n // 3, 20)) for c in centres]).astype(np.float32)
    matrix[list(invalid)] = np.nan
    run = RunFolder(tmp_path / "run")
    run.save_descriptor("blobs", matrix, {"fingerprint": "blobs-v1", "invalid": {str(i): "nan" for i in invalid}})
    return run


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_maps_are_fitted_on_a_sample_and_transform_the_rest(tmp_path, method):
    run = _vector_run(tmp_path, invalid=(5, 400))
    meta = compute_maps(run, ["blobs"], MapSettings(method=method, fit_sample=150))["blobs"]
    assert meta["fit_rows"] == 150 and meta["transformed"] and meta["n_rows"] == 598
    for dims in (2, 3):
        coords = load_map(run, "blobs", dims)
        assert coords.shape == (600, dims) and coords.dtype == np.float32
        assert np.isnan(coords[[5, 400]]).all() and np.isfinite(np.delete(coords, [5, 400], 0)).all()
    # transformed rows land with their own blob: each blob's points are closer to its own centre
    coords = np.delete(load_map(run, "blobs", 2), [5, 400], 0)
    blob = np.delete(np.repeat(np.arange(3), 200), [5, 400])
    centres = np.stack([coords[blob == b].mean(0) for b in range(3)])
    nearest = np.argmin(np.linalg.norm(coords[:, None] - centres[None], axis=2), axis=1)
    assert (nearest == blob).mean() > 0.95


def test_maps_are_reused_until_their_inputs_change(tmp_path):
    run = _vector_run(tmp_path)
    settings = MapSettings(method="pca")
    compute_maps(run, ["blobs"], settings)
    first = MAP_META.load(run, "blobs")["fingerprint"]
    stamp = (run.root / "maps" / "blobs_2d.npy").stat().st_mtime_ns
    compute_maps(run, ["blobs"], settings)
    assert (run.root / "maps" / "blobs_2d.npy").stat().st_mtime_ns == stamp
    compute_maps(run, ["blobs"], MapSettings(method="pca", seed=1))
    assert MAP_META.load(run, "blobs")["fingerprint"] != first


@pytest.mark.parametrize("damage", [b"garbage", b"[1, 2]"])
def test_a_damaged_map_provenance_makes_the_map_again(tmp_path, damage):
    run = _vector_run(tmp_path)
    settings = MapSettings(method="pca")
    compute_maps(run, ["blobs"], settings)
    coords = np.load(run.root / "maps" / "blobs_2d.npy")
    (run.root / "maps" / "blobs.json").write_bytes(damage)
    meta = compute_maps(run, ["blobs"], settings)["blobs"]
    assert meta == MAP_META.load(run, "blobs") and meta["fingerprint"]
    assert np.array_equal(np.load(run.root / "maps" / "blobs_2d.npy"), coords, equal_nan=True)


@pytest.mark.slow
def test_a_map_is_the_same_computed_alone_or_beside_others_in_worker_processes(tmp_path, monkeypatch):
    """Several stale maps are computed side by side in worker processes, a lone one here: the
    coordinates must not depend on which (both run on one thread)."""
    import vehiclust.report.maps as maps

    run = _vector_run(tmp_path, n=4500)  # above UMAP_EXACT_BELOW: the exact neighbour graph of the sample
    run.save_descriptor("blobs_again", run.load_descriptor("blobs"), {"fingerprint": "blobs-v1-again"})
    settings = MapSettings(fit_sample=4200)
    pooled_with = []
    real_pool = maps.worker_pool
    monkeypatch.setattr(maps, "worker_pool", lambda workers: pooled_with.append(max(workers, 2)) or real_pool(2))
    compute_maps(run, ["blobs", "blobs_again"], settings)
    beside = {d: load_map(run, "blobs", d) for d in (2, 3)}
    MAP_META.path(run, "blobs").unlink()  # stale again, alone this time
    monkeypatch.setattr(maps, "worker_pool", lambda workers: pooled_with.append(workers) or real_pool(workers))
    compute_maps(run, ["blobs", "blobs_again"], settings)
    assert pooled_with == [2, 1]  # side by side in workers, then alone in this process
    for dims in (2, 3):
        np.testing.assert_array_equal(load_map(run, "blobs", dims), beside[dims])
        np.testing.assert_array_equal(load_map(run, "blobs_again", dims), beside[dims])  # the same matrix


def test_unknown_map_method_is_refused():
    with pytest.raises(VehiclustError, match="umap, pca, tsne"):
        MapSettings(method="isomap")


def test_map_view_packing():
    coords = np.array([[0.0, 10.0], [5.0, 20.0], [10.0, 30.0]])
    codes, low, high = quantise(coords)
    assert codes.dtype == np.uint16 and low == [0.0, 10.0] and high == [10.0, 30.0]
    np.testing.assert_allclose(np.array(low) + codes / 65535 * (np.array(high) - low), coords, atol=1e-3)
    many = pd.Series([f"camera {i % 40}" for i in range(400)] + [""] * 3)
    encoded = encode_categories(many)
    assert len(encoded["names"]) == 25 and encoded["names"][-1] == "other"  # the rarest pooled, "none" too
    assert len(display_rows(np.ones(1000, bool), 100, 0)) == 100


# -- descriptions ----------------------------------------------------------------------------

QUOTE = re.compile(r"(?P<value>[\w./-][\w ./-]*?) (?P<share>\d+)% \(vs (?P<overall>\d+)% overall\)")


def _parts(sentence: str) -> dict[str, str]:
    """'label: values' parts of a generated sentence, by label."""
    parts = {}
    for part in sentence.rstrip(".").split("; "):
        if ": " in part:
            label, values = part.split(": ", 1)
            parts[label] = values
    return parts


def assert_descriptions_are_true(frame: pd.DataFrame, labels: np.ndarray, descriptions: pd.DataFrame) -> int:
    """Every share quoted equals the share recomputed here from the raw attributes; every value
    named passes the rule; every value the rule picks (up to MAX_VALUES) is named. Returns how
    many quotes were checked."""
    checked = 0
    for record in descriptions.to_dict("records"):
        inside = labels == record["cluster"]
        assert record["size"] == inside.sum()
        parts = _parts(record["description"])
        for attribute, label in desc.CATEGORICAL:
            if attribute not in frame.columns:
                assert label not in parts
                continue
            known = frame[attribute] != ""
            share_in = frame.loc[inside & known, attribute].value_counts(normalize=True)
            share_all = frame.loc[known, attribute].value_counts(normalize=True)
            quoted = {m["value"]: m for m in QUOTE.finditer(parts.get(label, ""))}
            for value, match in quoted.items():
                assert int(match["share"]) == round(100 * share_in[value]), (record, value)
                assert int(match["overall"]) == round(100 * share_all[value]), (record, value)
                assert share_in[value] >= desc.MIN_SHARE and share_in[value] >= desc.MIN_LIFT * share_all[value]
                checked += 1
            passing = [v for v in share_in.index[:5]
                       if share_in[v] >= desc.MIN_SHARE and share_in[v] >= desc.MIN_LIFT * share_all[v]]
            assert set(passing[:desc.MAX_VALUES]) == set(quoted), (record, attribute, passing, quoted)
    return checked


def test_descriptions_quote_the_computed_shares_and_follow_the_rule():
    rng = np.random.default_rng(1)
    n = 2000
    labels = rng.integers(0, 4, n)
    colour = np.where(labels == 0, rng.choice(["white", "black"], n, p=[0.8, 0.2]),
                      rng.choice(["white", "black", "red", "blue"], n))
    kind = np.where(labels == 1, "van", rng.choice(["car", "van", "bus"], n, p=[0.7, 0.2, 0.1]))
    frame = pd.DataFrame({"predicted_color": colour, "predicted_type": kind,
                          "color_label": np.where(rng.random(n) < 0.1, "", colour),
                          "pixels": np.where(labels == 2, 4.0e5, 1.0e5) * rng.uniform(0.9, 1.1, n)})
    descriptions, evidence = desc.describe_clusters(frame, labels)
    assert assert_descriptions_are_true(frame, labels, descriptions) >= 3
    by_cluster = descriptions.set_index("cluster")
    assert by_cluster.at[0, "name"].startswith("White")
    assert by_cluster.at[1, "name"] == "Vans"
    assert "image size higher" in by_cluster.at[2, "description"]
    assert "No attribute stands out" in by_cluster.at[3, "description"]
    assert set(evidence.columns) >= {"cluster", "attribute", "value", "share", "overall", "named", "lift"}


def test_rule_boundaries():
    assert desc.is_characteristic(0.31, 0.20) and not desc.is_characteristic(0.29, 0.20)
    assert not desc.is_characteristic(0.20, 0.05)  # lifted but too rare inside the cluster
    assert desc.numeric_differs(125, 100) and not desc.numeric_differs(120, 100)
    assert not desc.numeric_differs(np.nan, 100)


# -- thumbnails ------------------------------------------------------------------------------

def test_thumbnails_are_cached_and_dropped_when_the_collection_changes(tmp_path, photo_folder):
    files = sorted(photo_folder.rglob("*.jpg"))[:4]
    table = pd.DataFrame({"path": [f.name for f in files], "location": [str(f) for f in files]})
    table.loc[len(table)] = ["missing.jpg", ""]
    run = RunFolder(tmp_path / "run")
    made = ensure_thumbnails(run, table, range(5))
    assert made.tolist() == [0, 1, 2, 3]
    sizes = [thumbnail_path(run, r).stat().st_size for r in made]
    assert all(500 < s < 15_000 for s in sizes)
    stamp = thumbnail_path(run, 0).stat().st_mtime_ns
    ensure_thumbnails(run, table, range(5))
    assert thumbnail_path(run, 0).stat().st_mtime_ns == stamp
    ensure_thumbnails(run, table.iloc[::-1].reset_index(drop=True), [0])
    assert not thumbnail_path(run, 3).exists()  # row numbers moved: the old cache is gone



def test_a_thumbnail_keeps_the_shape_of_its_image(tmp_path, photo_folder):
    """A wide vehicle crop stays wide: its longer side becomes 112 px, the other in proportion
    (up to rounding); a small image is not enlarged."""
    from PIL import Image

    photo = Image.open(sorted(photo_folder.rglob("*.jpg"))[0]).convert("RGB")
    shapes = {"wide.jpg": (300, 90), "tall.jpg": (80, 240), "small.jpg": (60, 40)}
    for name, size in shapes.items():
        photo.resize(size).save(tmp_path / name, quality=90)
    table = pd.DataFrame({"path": list(shapes), "location": [str(tmp_path / n) for n in shapes]})
    run = RunFolder(tmp_path / "run")
    ensure_thumbnails(run, table, range(len(table)))
    made = [Image.open(thumbnail_path(run, row)).size for row in range(len(table))]
    assert made == [(112, 34), (37, 112), (60, 40)]


def test_the_sweep_chart_draws_every_family_and_circles_the_selected_run():
    from vehiclust.report.html import metric_curves

    runs = pd.DataFrame({"preprocessing": ["l2", "l2", "l2", "none"], "algorithm": ["kmeans"] * 3 + ["ward"],
                         "n_clusters": [4, 2, 3, 2], "params": ["k=4", "k=2", "k=3", "k=2"],
                         "silhouette": [0.3, 0.5, np.nan, 0.1], "davies_bouldin": [1.0, 0.8, 0.9, 2.0],
                         "stability": [0.9, 1.0, 0.95, 0.5], "score": [0.5, 0.7, 0.6, 0.2],
                         "selected": [False, True, False, False]})
    curves = metric_curves(runs)
    assert [f["label"] for f in curves["families"]] == ["kmeans / l2", "ward / none"]
    first = curves["families"][0]
    assert first["k"] == [2, 3, 4] and first["params"] == ["k=2", "k=3", "k=4"]  # in order of k
    assert first["silhouette"] == [0.5, None, 0.3]  # NaN is null: JSON has no NaN
    assert curves["chosen"] == {"k": 2, "silhouette": 0.5, "davies_bouldin": 0.8, "stability": 1.0, "score": 0.7}
    json.loads(json.dumps(curves, allow_nan=False))


def _sheet_collection(tmp_path, photo_folder, rows: int) -> pd.DataFrame:
    """``rows`` rows cycling over the photos, every 50th without an image and, among the first
    256 (the first sheet), every 70th a text file named .jpg."""
    files = [str(f) for f in sorted(photo_folder.rglob("*.jpg"))]
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    locations = ["" if r % 50 == 7 else str(broken) if r % 70 == 3 and r < 256 else files[r % len(files)]
                 for r in range(rows)]
    return pd.DataFrame({"path": [f"{r}.jpg" for r in range(rows)], "location": locations})


def test_map_thumbnails_are_sheets_whose_cells_hold_each_rows_thumbnail(tmp_path, photo_folder):
    from PIL import Image

    from vehiclust.report.thumbnails import make_thumbnail
    from vehiclust.report.tilesheets import SHEET_ROWS, ensure_map_tiles, map_tile, read_index, sheet_path

    table = _sheet_collection(tmp_path, photo_folder, 300)
    run = RunFolder(tmp_path / "run")
    cells = ensure_map_tiles(run, table, range(300))
    assert sorted(p.relative_to(run.root).as_posix() for p in (run.root / "thumbs" / "map").iterdir()) == [
        "thumbs/map/0.jpg", "thumbs/map/1.jpg"]  # 300 rows: two sheets, not 300 files
    missing = [r for r in range(300) if r % 50 == 7 or (r % 70 == 3 and r < 256)]
    assert (cells[missing] == -1).all() and (np.delete(cells, missing) >= 0).all()
    first = read_index(sheet_path(run, 0))
    assert first.rows == tuple(r for r in range(SHEET_ROWS) if r not in missing)
    for row in (0, 5, 255, 256, 290):
        block = row // SHEET_ROWS
        in_block = [r for r in range(block * SHEET_ROWS, min(300, (block + 1) * SHEET_ROWS)) if r not in missing]
        assert cells[row] == in_block.index(row)
        tile, expected = map_tile(run, row), make_thumbnail(table["location"][row])
        assert tile.size == expected.size
        error = np.abs(np.asarray(tile, float) - np.asarray(expected, float)).mean()
        other_photo = make_thumbnail(table["location"][row + 6]).resize(tile.size)
        assert error < 12 and np.abs(np.asarray(tile, float) - np.asarray(other_photo, float)).mean() > 30  # measured: 2-7, 55-97
    assert map_tile(run, 7) is None and map_tile(run, 3) is None
    with Image.open(sheet_path(run, 1)) as sheet:
        assert sheet.size == (16 * 112, 3 * 112)  # 44 rows, 43 of them with a tile: 3 lines of 16


def test_a_sheet_is_made_again_only_when_its_rows_change_and_then_as_if_new(tmp_path, photo_folder):
    from vehiclust.report.tilesheets import ensure_map_tiles, sheet_path

    table = _sheet_collection(tmp_path, photo_folder, 300)
    run = RunFolder(tmp_path / "run")
    ensure_map_tiles(run, table, range(300))
    stamps = [sheet_path(run, b).stat().st_mtime_ns for b in (0, 1)]
    ensure_map_tiles(run, table, range(300))
    now = [sheet_path(run, b).stat().st_mtime_ns for b in (0, 1)]
    assert now[1] == stamps[1]  # the same rows: kept
    assert now[0] != stamps[0]  # an image that could not be read is tried again (a moment's failure heals)
    cells = ensure_map_tiles(run, table, range(0, 300, 2))  # fewer rows: both sheets made again
    assert cells[1] == -1 and cells[2] == 1
    fresh = RunFolder(tmp_path / "fresh")
    ensure_map_tiles(fresh, table, range(0, 300, 2))
    assert all(sheet_path(run, b).read_bytes() == sheet_path(fresh, b).read_bytes() for b in (0, 1))
    ensure_map_tiles(run, table, range(0, 256))  # no map point among the last rows: their sheet goes
    assert sheet_path(run, 0).exists() and not sheet_path(run, 1).exists()

# -- the whole report on a demo run ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from vehiclust.demo import build_demo

    root = tmp_path_factory.mktemp("report")
    demo = build_demo(root / "demo", size=150, seed=4)
    settings = RunSettings(descriptors=["vehicle_type", "vehicle_color"],
                           cluster=ClusterSettings(k_min=3, k_max=6, algorithms=("kmeans",),
                                                   preprocessing=("std+pca",)))
    return run_pipeline(demo.root, root / "run", settings).run


@pytest.mark.slow
def test_report_files_and_sections(demo_run):
    for name in ("report.html", "report.ipynb", "clusters.csv", "cluster_descriptions.csv",
                 "cluster_evidence.csv", "maps/vehicle_type_2d.npy", "maps/vehicle_color_3d.npy",
                 "maps/vehicle_type_2d.png", "thumbs/manifest.json"):
        assert demo_run.path(name).exists(), name
    html = demo_run.path("report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    descriptions = pd.read_csv(demo_run.path("cluster_descriptions.csv"))
    for name, sentence in zip(descriptions["name"], descriptions["description"]):
        assert name in html and sentence.replace("%", "") [:40] in html.replace("%", "")
    clusters = pd.read_csv(demo_run.path("clusters.csv"), keep_default_na=False)
    assert set(clusters["cluster_name"]) <= set(descriptions["name"]) | {""}
    assert "https://" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # nothing fetched


@pytest.mark.slow
def test_demo_descriptions_are_true_to_the_evidence(demo_run):
    table = demo_run.load_collection()
    frame = desc.attributes(demo_run, table)
    labels = pd.read_csv(demo_run.path("clusters.csv"))["cluster"].to_numpy()
    descriptions = pd.read_csv(demo_run.path("cluster_descriptions.csv"), keep_default_na=False)
    assert {"predicted_type", "predicted_color", "imagenet_class", "type_label", "color_label",
            "day_night"} <= set(frame.columns)
    assert assert_descriptions_are_true(frame, labels, descriptions) > 0


@pytest.mark.slow
def test_notebook_is_executed_and_reads_the_run(demo_run):
    notebook = nbformat.read(demo_run.path("report.ipynb"), as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert any("vehiclust.load_run(RUN_DIR)" in c.source for c in code)
    assert all(c.execution_count for c in code)
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    text = " ".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    for name in pd.read_csv(demo_run.path("cluster_descriptions.csv"))["name"]:
        assert name in text
    assert any(c.source.startswith("## Comparing descriptors") for c in notebook.cells)
    for name in pd.read_csv(demo_run.path("comparison.csv"))["name"]:  # descriptors, consensus
        assert name in text


@pytest.mark.slow
def test_a_failing_notebook_is_kept_unexecuted(demo_run, tmp_path, monkeypatch):
    copy = RunFolder(tmp_path / "copy")
    shutil.copytree(demo_run.root, copy.root)
    monkeypatch.setattr("vehiclust.report.notebook.CELL_TIMEOUT_S", 0.001)
    status = write_notebook(copy)
    assert status.startswith("written, not executed:")
    notebook = nbformat.read(copy.path("report.ipynb"), as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
def test_a_deliverables_only_pass_writes_the_same_clusters_csv_and_nothing_of_the_page(demo_run, tmp_path):
    from vehiclust.report.stage import ReportSettings, report

    copy = RunFolder(tmp_path / "copy")
    shutil.copytree(demo_run.root, copy.root)
    for name in ("clusters.csv", "cluster_descriptions.csv", "report.html", "report.ipynb"):
        copy.path(name).unlink()
    shutil.rmtree(copy.path("maps"))
    shutil.rmtree(copy.path("thumbs"))
    report(copy, settings=ReportSettings(deliverables_only=True))
    for name in ("clusters.csv", "cluster_descriptions.csv"):
        assert copy.path(name).read_bytes() == demo_run.path(name).read_bytes(), name
    assert not any(copy.path(name).exists() for name in ("report.html", "report.ipynb", "maps", "thumbs"))


# -- the page in a real browser --------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("VEHICLUST_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.mark.slow
def test_report_in_headless_chromium(demo_run):
    playwright = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        message = "no chromium found (make test installs Debian's chromium)"
        if os.environ.get("VEHICLUST_BROWSER_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.goto(demo_run.path("report.html").resolve().as_uri())
        page.wait_for_selector("#map .main-svg", timeout=60_000)
        n_points = page.evaluate("() => document.getElementById('map').data.reduce((n, t) => n + t.x.length, 0)")
        assert n_points == len(demo_run.load_collection())
        assert page.locator("#map canvas").count() >= 1  # WebGL layers of scattergl
        # The map starts near the fold: a point below it cannot be hovered until it is scrolled to.
        page.locator("#map").scroll_into_view_if_needed()
        x, y = page.evaluate("""() => {
            const gd = document.getElementById('map'), size = gd._fullLayout._size, t = gd.data[0];
            const box = gd.getBoundingClientRect();
            return [box.left + size.l + gd._fullLayout.xaxis.l2p(t.x[0]), box.top + size.t + gd._fullLayout.yaxis.l2p(t.y[0])];
        }""")
        page.mouse.move(x, y)
        page.wait_for_function("() => /thumbs\\/map\\/\\d+\\.jpg/.test(document.getElementById('hover-img').style.backgroundImage)",
                               timeout=10_000)
        row = page.evaluate("() => { const m = window.vehiclustMap; return m.rows[m.traceIndex()[0][0]]; }")
        assert f"row{row}" in page.locator("#hover-info").inner_text().replace("\t", "").replace(" ", "")
        _assert_hover_shows_the_tile_of(page, demo_run, row)
        page.mouse.click(x, y)
        assert page.locator("#zoom").is_visible()
        page.wait_for_selector("#zoom-tile", state="visible", timeout=10_000)  # once its sheet is loaded
        assert not page.locator("#zoom-img").is_visible()
        page.locator("#zoom").click()
        runs = all_runs(demo_run)  # the descriptors' and the mixtures' sweeps
        charts = page.evaluate("() => [...document.querySelectorAll('.metrics-chart')].map(c => c.data.length)")
        assert charts == [4 * g.groupby(["preprocessing", "algorithm"]).ngroups + 4  # a line per family and metric,
                          for _, g in runs.groupby("descriptor", sort=False)]  # and the selected run's circles
        page.check("input[name=map-dims][value='3']")
        page.wait_for_function("() => document.getElementById('map').data[0].type === 'scatter3d'", timeout=30_000)
        page.select_option("#map-colour", index=1)
        browser.close()
    assert not problems, problems


def _assert_hover_shows_the_tile_of(page, run, row: int) -> None:
    """The hover view, as the browser painted it, is the row's own thumbnail (cut from its sheet
    here) at twice its size, centred on grey: closer to it than to any other tile of the sheet."""
    import io

    from PIL import Image

    from vehiclust.report.tilesheets import BACKGROUND, map_tile, read_index, sheet_path

    def shown_as_hovered(tile: Image.Image) -> np.ndarray:
        canvas = Image.new("RGB", (224, 224), BACKGROUND)
        big = tile.resize((2 * tile.width, 2 * tile.height), Image.Resampling.BILINEAR)
        canvas.paste(big, ((224 - big.width) // 2, (224 - big.height) // 2))
        return np.asarray(canvas, float)

    page.evaluate("""async () => {  // the sheet loaded and decoded, then one frame to paint it
        const image = new Image();
        image.src = document.getElementById('hover-img').style.backgroundImage.slice(5, -2);
        await image.decode();
        await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    }""")
    painted = np.asarray(Image.open(io.BytesIO(page.locator("#hover-img").screenshot())).convert("RGB"), float)
    assert abs(painted.shape[0] - 224) <= 1 and abs(painted.shape[1] - 224) <= 1  # the box may sit between pixels
    painted = painted[:224, :224]
    errors = {other: np.abs(painted - shown_as_hovered(map_tile(run, other))).mean()
              for other in read_index(sheet_path(run, row // 256)).rows}
    assert min(errors, key=errors.get) == row and errors[row] < 15, sorted(errors.items(), key=lambda e: e[1])[:3]


@pytest.mark.slow
def test_the_default_umap_map_keeps_the_neighbourhoods_of_real_data():
    """Digits (real scans) at the default settings: trustworthiness 0.988 measured; 30 epochs
    give 0.980, 5 give 0.765, so too few epochs fail here."""
    from sklearn.datasets import load_digits
    from sklearn.manifold import trustworthiness

    from vehiclust.report import maps

    X = load_digits().data.astype(np.float32)
    xy = maps.embed(X, np.ones(len(X), bool), 2, MapSettings())
    assert trustworthiness(X, xy, n_neighbors=10) > 0.983


def test_a_montage_draws_every_image_in_its_tile_with_its_caption():
    from PIL import Image

    from vehiclust.report.figures import plot_montage

    images = [Image.new("RGB", (112, 80), (255, 0, 0)), None, Image.new("RGB", (400, 400), (0, 0, 255))]
    figure = plot_montage(images, ["a/red.jpg", "missing.jpg", "big/blue.jpg"], columns=2, title="t")
    (ax,) = figure.axes
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 116, 2 * 116, 3)
    assert tuple(canvas[56, 56]) == (255, 0, 0)  # the red image, centred in the first tile
    assert tuple(canvas[56, 116 + 56]) == (220, 220, 220)  # no image: a grey tile
    assert tuple(canvas[116 + 56, 56]) == (0, 0, 255)  # the big image, shrunk into the third tile
    assert tuple(canvas[116 + 56, 116 + 56]) == (255, 255, 255)  # nothing in the fourth
    assert [t.get_text() for t in ax.texts] == ["a/red.jpg", "missing.jpg", "big/blue.jpg"]
