"""The report stage on a generated run folder of VeRi-Wild's size (416,314 rows by default).

The folder has the real layout (collection.parquet, descriptors/*.npy + .json, clusterings/*.npz,
runs.csv, outliers.csv, stages/ingest.json) with clustered synthetic descriptors: vehicle_type
(13-d), vehicle_color (31-d) and a 128-d "vdc_color"-sized block. Images: a pool of small JPEGs
that the rows point to in turn (each map point's tile is decoded from its image, as with real images).

    python benchmarks/report_scale.py --rows 416314 --out /tmp/report_scale

Prints the time of each part of the report, the size of report.html, of the thumbnails folder
and of the map data, and how many points the map shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vehiclust.describe.vehicle_type import TYPE_COLUMNS
from vehiclust.report.maps import MapSettings
from vehiclust.report.stage import ReportSettings, report
from vehiclust.runfolder import RunFolder, write_csv, write_json, write_parquet

COLOURS = ["white", "silver", "gray", "black", "red", "orange", "yellow", "green", "blue", "purple", "brown"]
BODY = ["sedan", "suv", "mpv", "hatchback", "pickup", "bus", "truck", "van"]


def image_pool(folder: Path, n: int, seed: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            colour = rng.integers(0, 255, 3)
            noise = rng.integers(-40, 40, (180, 240, 3))
            Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(path, quality=85)
        paths.append(str(path))
    return paths


def blobs(n: int, dims: int, groups: np.ndarray, rng, softmax: bool = False) -> np.ndarray:
    centres = rng.normal(0, 3, (groups.max() + 1, dims))
    matrix = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = slice(start, min(start + 100_000, n))
        block = centres[groups[part]] + rng.normal(0, 1, (part.stop - part.start, dims))
        if softmax:
            block = np.exp(block - block.max(1, keepdims=True))
            block /= block.sum(1, keepdims=True)
        matrix[part] = block
    return matrix


def build_run(root: Path, n: int, seed: int = 0, pool: int = 2000) -> RunFolder:
    rng = np.random.default_rng(seed)
    run = RunFolder(root)
    locations = image_pool(root.parent / f"{root.name}_images", pool, seed)
    vehicle = np.sort(rng.integers(0, max(n // 10, 1), n))
    type_group, colour_group = rng.integers(0, len(BODY), n), rng.integers(0, len(COLOURS), n)
    table = pd.DataFrame({
        "row": np.arange(n), "path": [f"veriwild/{v % 10 + 1}/{v:05d}/{i:06d}.jpg" for i, v in enumerate(vehicle)],
        "location": [locations[i % pool] for i in range(n)], "width": rng.integers(120, 700, n),
        "height": rng.integers(100, 500, n), "file_size": rng.integers(5_000, 90_000, n),
        "content_hash": [f"{i:024x}" for i in range(n)], "format": "JPEG", "mode": "RGB", "error": "",
        "vehicle_id": [f"{v:05d}" for v in vehicle], "camera_id": rng.integers(1, 175, n).astype(str),
        "time": pd.Timestamp("2018-03-01") + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
        "model": "", "type": np.array(BODY)[type_group], "color": np.array(COLOURS)[colour_group]})
    table["time"] = table["time"].astype(str)
    write_parquet(run.collection_path, table)
    write_json(run.stages_dir / "ingest.json", {"stage": "ingest", "fingerprint": "bench", "seconds": 0,
                                                "input": "synthetic", "kind": "image_folder"})
    descriptors = {
        "vehicle_type": (blobs(n, len(TYPE_COLUMNS), type_group, rng, softmax=True), list(TYPE_COLUMNS)),
        "vehicle_color": (np.hstack([blobs(n, 11, colour_group, rng, softmax=True), rng.random((n, 20), np.float32)]),
                          [f"p_{c}" for c in COLOURS] + [f"x{i}" for i in range(20)]),
        "vdc_color": (blobs(n, 128, colour_group * 3 % 7, rng), [])}
    runs = []
    for name, (matrix, columns) in descriptors.items():
        run.save_descriptor(name, matrix, {"fingerprint": f"bench-{name}", "columns": columns, "invalid": {}})
        labels = (type_group if name == "vehicle_type" else colour_group).astype(np.int32)
        write_clustering(run, name, labels, rng)
        runs += runs_rows(name, int(labels.max()) + 1, rng)
    frame = pd.DataFrame(runs)
    frame.loc[frame["selected"] & (frame["descriptor"] == "vehicle_type"), "best_overall"] = True
    write_csv(run.path("runs.csv"), frame)
    write_csv(run.path("outliers.csv"), outliers_table(table, rng))
    return run


def write_clustering(run: RunFolder, name: str, labels: np.ndarray, rng) -> None:
    path = run.root / "clusterings" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, labels=labels, distance=rng.random(len(labels)).astype(np.float32),
                 centers=np.zeros((labels.max() + 1, 2), np.float32), embedding_rows=np.arange(len(labels)),
                 preprocessing=np.array("std+pca"), algorithm=np.array("kmeans"), params=np.array("k"))


def runs_rows(name: str, chosen_k: int, rng) -> list[dict]:
    rows = []
    for k in range(2, 21):
        rows.append({"descriptor": name, "preprocessing": "std+pca", "algorithm": "kmeans", "params": f"k={k}",
                     "k": k, "n_clusters": k, "n_rows": 0, "calinski_harabasz": 1e5 / k,
                     "davies_bouldin": 1 + rng.random(), "silhouette": rng.random() / 2, "stability": rng.random(),
                     "min_cluster_share": 0.01, "score": rng.random(), "selected": k == chosen_k,
                     "best_overall": False, "reason": "synthetic" if k == chosen_k else "", "seconds": 1.0})
    return rows


def outliers_table(table: pd.DataFrame, rng) -> pd.DataFrame:
    n = len(table)
    score = rng.random(n) ** 8
    reasons = np.where(score > 0.85, rng.choice(["dark", "blur", "isolated", "small"], n), "")
    return pd.DataFrame({"row": table["row"], "path": table["path"], "error": "", "outlier_score": score.round(4),
                         "is_outlier": reasons != "", "outlier_reasons": reasons})


def browser_timings(page_path: Path, chromium: str = "/usr/bin/chromium") -> None:
    """Open the page in headless Chromium (software WebGL): time to a drawn map, hover and redraws."""
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        started = time.perf_counter()
        page.goto(page_path.resolve().as_uri(), timeout=600_000)
        page.wait_for_selector("#map .main-svg", timeout=600_000)
        print(f"browser: page loaded and map drawn in {time.perf_counter() - started:.1f} s")
        page.locator("#map").scroll_into_view_if_needed()
        x, y = page.evaluate("""() => { const gd = document.getElementById('map'), s = gd._fullLayout._size;
            const t = gd.data[0], box = gd.getBoundingClientRect();
            return [box.left + s.l + gd._fullLayout.xaxis.l2p(t.x[0]), box.top + s.t + gd._fullLayout.yaxis.l2p(t.y[0])]; }""")
        started = time.perf_counter()
        page.mouse.move(x, y)
        page.wait_for_function("() => document.getElementById('hover-info').rows.length > 0", timeout=60_000)
        shown = page.evaluate("() => document.getElementById('hover-img').style.backgroundImage")
        print(f"browser: hover answered in {1000 * (time.perf_counter() - started):.0f} ms (image: {shown})")
        for label, action in (("colour by outlier reason", lambda: page.select_option("#map-colour", "outlier reason")),
                              ("3D view", lambda: page.check("input[name=map-dims][value='3']"))):
            started = time.perf_counter()
            action()
            page.wait_for_timeout(50)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            print(f"browser: {label} redrawn in {time.perf_counter() - started:.1f} s")
        print(f"browser: console errors: {errors or 'none'}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=416_314)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vehiclust_report_scale/run"))
    parser.add_argument("--max-thumbnails", type=int, default=100_000)
    parser.add_argument("--fit-sample", type=int, default=20_000)
    parser.add_argument("--no-notebook", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="Keep an existing generated run folder (and its caches).")
    parser.add_argument("--browser", action="store_true", help="Also time the page in headless Chromium.")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.reuse and (args.out / "runs.csv").exists():
        run = RunFolder(args.out)
    else:
        run = build_run(args.out, args.rows)
        print(f"built a {args.rows:,}-row run folder in {time.perf_counter() - started:.1f} s: {args.out}")
    settings = ReportSettings(maps=MapSettings(fit_sample=args.fit_sample), max_thumbnails=args.max_thumbnails,
                              notebook=not args.no_notebook)
    started = time.perf_counter()
    report(run, settings=settings)
    total = time.perf_counter() - started
    record = json.loads(run.path("stages/report.json").read_text())
    for part, seconds in record["parts"].items():
        print(f"  {part:<14} {seconds:8.1f} s")
    print(f"report stage: {total:.1f} s")
    html = run.path("report.html").read_text()
    data = html[html.index('<script id="map-data"'):]
    data = data[:data.index("</script>")]
    thumbs = list((run.root / "thumbs").rglob("*.jpg"))
    sheets = [p for p in thumbs if p.parent.name == "map"]
    print(f"report.html: {len(html.encode()) / 1e6:.1f} MB (map data {len(data) / 1e6:.1f} MB); "
          f"thumbnails: {len(thumbs) - len(sheets):,} picture files and {len(sheets):,} map sheets, "
          f"{sum(p.stat().st_size for p in thumbs) / 1e6:.0f} MB")
    payload = json.loads(data[data.index(">") + 1:])
    for name, view in payload["views"].items():
        print(f"  map {name}: {view['n']:,} points in 2D (scattergl), {view['n3']:,} in 3D")
    if run.path("report.ipynb").exists():
        print(f"report.ipynb: {run.path('report.ipynb').stat().st_size / 1e6:.1f} MB")
    if args.browser:
        browser_timings(run.path("report.html"))


if __name__ == "__main__":
    main()
