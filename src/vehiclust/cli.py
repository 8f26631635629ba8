"""The ``vehiclust`` command. It only parses options and calls the library (:mod:`vehiclust.pipeline`).

Errors the user can act on (:class:`~vehiclust.errors.VehiclustError`) are printed on one line by
one handler (:class:`_Commands`); ``--debug`` shows their traceback instead. Option help that
lists registry entries or defaults is filled in from the registries and settings when help is
shown (importing them costs seconds, so not on every call).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from vehiclust import __version__
from vehiclust.errors import VehiclustError, fault_message

console = Console(stderr=True)


class _Commands(typer.core.TyperGroup):
    """The one error handler: a VehiclustError, or a fault of the machine (read-only or full disk,
    memory, Ctrl-C; :func:`~vehiclust.errors.fault_message`), becomes ``error: <message>`` and its
    exit code; a genuine bug keeps its traceback, and ``--debug`` shows every traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as exc:
            error = fault_message(exc)
            if error is None or ctx.meta.get("vehiclust.debug"):
                raise
            # escaped: a path or an install hint ("vehiclust[ray]") may hold [..]
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(error, "exit_code", 1)) from None


class _GeneratedHelp(typer.core.TyperCommand):
    """Fills the ``{placeholders}`` of the options' help from the registries when help is shown."""

    def format_help(self, ctx, formatter):
        values = help_values()
        for param in self.params:
            if getattr(param, "help", None) and "{" in param.help:
                param.help = param.help.format_map(values)
        return super().format_help(ctx, formatter)


def help_values() -> dict[str, str]:
    """What the help texts list, read from where it is defined."""
    from vehiclust.cluster import ALGORITHMS, ClusterSettings
    from vehiclust.compare.settings import ALIASES
    from vehiclust.describe import default_descriptors
    from vehiclust.outliers import CHECKS, DETECTORS, DetectorSettings
    from vehiclust.report.maps import METHODS, MapSettings
    from vehiclust.report.stage import ReportSettings

    cluster, join = ClusterSettings(), ", ".join
    return {
        "default_descriptors": ",".join(default_descriptors()),
        "default_k": f"{cluster.k_min}:{cluster.k_max}",
        "default_algorithms": join(cluster.algorithms),
        "other_algorithms": join(a for a in ALGORITHMS.names() if a not in cluster.algorithms),
        "default_preprocessing": ",".join(cluster.preprocessing),
        "checks": join(CHECKS.names()),
        "detectors": join(DETECTORS.names()), "default_detectors": ",".join(DetectorSettings().detectors),
        "map_methods": join(METHODS), "default_map_method": MapSettings().method,
        "default_max_thumbnails": f"{ReportSettings().max_thumbnails:,}",
        "mix_aliases": join(ALIASES),
    }


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help=(
        "Cluster, explain and clean a collection of vehicle images (or descriptor vectors "
        "already computed for them).\n\n"
        "Start with [bold]vehiclust demo[/], then [bold]vehiclust run INPUT --out DIR[/]. "
        "INPUT is an image folder (any layout; VeRi-Wild's is recognised), a case bundle "
        "(a folder with images_paths.csv and descriptors/*.pickle) or descriptor files "
        "(.npy, .parquet, .csv, .pickle). Every stage writes into the run folder DIR and can be "
        "re-run on its own (ingest, describe, cluster, compare, outliers, report)."
    ),
)
command = partial(app.command, cls=_GeneratedHelp)

OUT_OPTION = typer.Option(..., "--out", "-o", help="Run folder: every artifact is written here.")
WORKERS_OPTION = typer.Option(
    None, help="Threads that decode images while the model runs (default: 2 on the CPU, every "
               "core when a GPU runs the model).")
DEVICE_OPTION = typer.Option(
    "auto", help="Where the networks run: auto (a CUDA GPU when PyTorch sees one), cpu (ONNX "
                 "Runtime) or cuda[:N]. On a GPU, JPEGs are decoded there too (nvjpeg) when every "
                 "descriptor of the pass runs on it.")
PRECISION_OPTION = typer.Option(
    "auto",
    help="Numbers the networks compute in on the CPU: auto (int8 for EfficientNet-Lite0, about 1.4x "
         "faster; on the demo its clustering has ARI 0.955 with fp32's) or fp32.")
DESCRIPTORS_OPTION = typer.Option(
    None, "--descriptors", "-d",
    help="Comma-separated descriptor names (see `vehiclust descriptors`). Default: the ones the "
         "input brought, else {default_descriptors}.")
K_OPTION = typer.Option(None, "--k", help="k to sweep: MIN:MAX (every k to 12, coarser above), "
                        "MIN:MAX:STEP, K1,K2,... or one K to fix it. Default: {default_k}.")
ALGORITHMS_OPTION = typer.Option(
    None, "--algorithms", "-a", help="Comma-separated: {default_algorithms} (default) or {other_algorithms}.")
PREPROCESSING_OPTION = typer.Option(
    None, "--preprocessing", "-p", help="Comma-separated; steps joined by '+': none, std, l2, "
    "pca[:0.9|:50]\\[w], umap[:8]. Default: {default_preprocessing}.")
PREFER_FEW_OPTION = typer.Option(False, "--prefer-few", help="Select the fewest clusters within 10% of the best score "
                                 "(and keep the broad level of a hierarchy).")
CONTAMINATION_OPTION = typer.Option(
    None, help="Flag exactly this share of images as outliers (default: the share follows from "
               "the scores, so a clean collection gets almost none).")
THRESHOLD_OPTION = typer.Option(
    [], "--threshold", help="Override a check's threshold, CHECK=VALUE (e.g. dark=0.6). Repeatable. "
                            "Checks: {checks}.")
GROUP_BY_OPTION = typer.Option(
    "auto", help="Column whose groups get their own relative thresholds (auto: camera_id if present; none).")
MIX_OPTION = typer.Option(
    [], "--mix", "-m", help="Add a mixture of descriptors, swept and selected like a descriptor: "
    "'type+color' (weights measured on held-out vehicles), 'type:2+color:1' (your weights), 'all' "
    "(every clustered descriptor), 'auto' (the descriptors that best capture type and colour). Short names: "
    "{mix_aliases}, or any unique part of a name. Repeatable.")
MIX_TUNE_OPTION = typer.Option(
    "auto", "--mix-tune", help="What chooses mixture weights on held-out vehicles: auto (identity "
    "consistency when vehicle ids exist, else stability), identity, stability, a label column, or "
    "columns joined by '+' (type+color).")
BEST_OPTION = typer.Option(
    None, "--best", help="Clustering to deliver in clusters.csv's cluster column (a descriptor, mixture "
    "or 'consensus'), instead of the comparison's rule.")
MAP_METHOD_OPTION = typer.Option(None, "--map-method", help="2D/3D maps: {map_methods}. Default: {default_map_method}.")
NOTEBOOK_OPTION = typer.Option(True, "--notebook/--no-notebook", help="Write and execute report.ipynb.")
MAX_THUMBNAILS_OPTION = typer.Option(
    None, "--max-thumbnails", help="Hover thumbnails for at most this many map points (cached in DIR/thumbs). "
                                   "Default: {default_max_thumbnails}.")
DETECTORS_OPTION = typer.Option(
    None, help="Descriptor-space outlier detectors, comma-separated: {detectors}. Default: {default_detectors}.")
EXECUTOR_OPTION = typer.Option(
    "local", "--executor", help="Where the per-shard work runs (extraction, assigning and scoring every "
    "row): local (this process) or ray (a pool of Ray actors; pip install 'vehiclust[ray]').")
RAY_ADDRESS_OPTION = typer.Option(
    None, "--ray-address", help="Ray cluster to run on (with --executor ray; the run folder must be on "
    "storage every node mounts). Default: a local Ray instance, one worker process per core.")


def _report_settings(map_method: Optional[str] = None, notebook: bool = True, max_thumbnails: Optional[int] = None,
                     seed: int = 0):
    from vehiclust.report.maps import MapSettings
    from vehiclust.report.stage import ReportSettings

    maps = MapSettings(seed=seed, **({"method": map_method} if map_method else {}))
    return ReportSettings(maps=maps, notebook=notebook,
                          **({"max_thumbnails": max_thumbnails} if max_thumbnails is not None else {}))


def _outlier_settings(contamination, threshold, group_by, detectors):
    from vehiclust.outliers import outlier_settings

    return outlier_settings(contamination, list(threshold), group_by, detectors)


def _compare_settings(mix: list[str], best: Optional[str], seed: int = 0, tune: str = "auto"):
    from vehiclust.compare import CompareSettings

    return CompareSettings(mixes=tuple(mix), best=best, seed=seed, tune=tune)


def _executor_settings(executor: str, ray_address: Optional[str]):
    from vehiclust.executor import ExecutorSettings, create_executor

    if ray_address and executor != "ray":
        raise VehiclustError(f"--ray-address needs --executor ray (the executor is {executor})")
    settings = ExecutorSettings(executor, ray_address)
    create_executor(settings)  # an unknown name or a missing ray stops here, before any work
    return settings


def _on_executor(settings, executor):
    """Outlier settings whose detectors score every row on ``executor``."""
    return replace(settings, detectors=replace(settings.detectors, executor=executor))


def _reporter():
    from vehiclust.progress import reporter_for

    return reporter_for(console)


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


TRUST_PICKLES_OPTION = typer.Option(
    False, "--trust-pickles", help="Unpickle descriptor pickles that hold more than numpy arrays or "
    "lists of numbers (a DataFrame, say). Unpickling can run code: only for files you trust.")
FOLLOW_LINKS_OPTION = typer.Option(
    False, "--follow-links", help="Read links that lead out of the input folder (collections laid out "
    "as links to other storage). Without it they are rows with the reason outside_input.")
FORCE_OPTION = typer.Option(
    False, "--force", help="Accept an --out that is a non-empty folder vehiclust did not make; its "
    "files are still never replaced or removed.")
DESCRIPTOR_FILE_OPTION = typer.Option(
    [], "--descriptor-file", "-f",
    help="Extra descriptor file (.npy/.parquet/.csv/.pickle) matched to the images by a path "
         "column or by row order. Repeatable.")
ALLOW_INVALID_ROWS_OPTION = typer.Option(
    False, help="Keep descriptor rows with NaN/inf as outliers instead of stopping.")
MAX_PIXELS_OPTION = typer.Option(100_000_000, help="Refuse images with more pixels (decompression bombs).")
MAX_IMAGE_BYTES_OPTION = typer.Option("256M", "--max-image-bytes", help="Refuse larger image files and archive members (K, M, G suffixes).")
MAX_DESCRIPTOR_ROWS_OPTION = typer.Option(50_000_000, "--max-descriptor-rows", help="Refuse descriptor files with more rows.")
MAX_DESCRIPTOR_BYTES_OPTION = typer.Option("16G", "--max-descriptor-bytes", help="Refuse descriptor files whose values take more, and the input's CSV/text tables that are larger (K, M, G suffixes).")


def _ingest_settings(max_pixels: int, allow_invalid_rows: bool, trust_pickles: bool, follow_links: bool,
                     max_image_bytes: str, max_descriptor_rows: int, max_descriptor_bytes: str):
    from vehiclust.collection import IngestSettings
    from vehiclust.errors import parse_size

    return IngestSettings(max_pixels=max_pixels, allow_invalid_rows=allow_invalid_rows, trust_pickles=trust_pickles,
                          follow_links=follow_links, max_image_bytes=parse_size(max_image_bytes, "--max-image-bytes"),
                          max_descriptor_rows=max_descriptor_rows,
                          max_descriptor_bytes=parse_size(max_descriptor_bytes, "--max-descriptor-bytes"))


def _cluster_settings(k: Optional[str], seed: int, algorithms: Optional[str] = None,
                      preprocessing: Optional[str] = None, prefer_few: bool = False):
    from vehiclust.cluster import ClusterSettings
    from vehiclust.cluster.settings import parse_k

    fields = {"seed": seed, "prefer_few_clusters": prefer_few, **(parse_k(k) if k else {})}
    for name, value in (("algorithms", algorithms), ("preprocessing", preprocessing)):
        if value:
            fields[name] = value  # ClusterSettings splits comma-separated strings
    return ClusterSettings(**fields)


def _print_result(run) -> None:
    from vehiclust.runfolder import CLUSTERS, REPORT_HTML, REPORT_NOTEBOOK

    console.print(f"[green]done.[/] clusters: [bold]{CLUSTERS.path(run)}[/]")
    console.print(f"      report:   [bold]{REPORT_HTML.path(run)}[/] (with its thumbs/ folder)")
    if REPORT_NOTEBOOK.exists(run):
        console.print(f"      notebook: [bold]{REPORT_NOTEBOOK.path(run)}[/]")


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an error, show the traceback instead of one line."),
) -> None:
    ctx.meta["vehiclust.debug"] = debug
    from vehiclust.thirdparty import configure_process

    configure_process()  # matplotlib's, IPython's and Jupyter's state under the user cache
    ctx.call_on_close(_summarise_warnings())
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def _summarise_warnings():
    """Third-party warnings are counted while the command runs and named once at its end."""
    from vehiclust.progress import WarningTally

    tally = WarningTally().install()

    def summarise() -> None:
        tally.uninstall()
        for line in tally.summary():
            console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)

    return summarise


@command()
def run(
    input: Path = typer.Argument(..., help="Image folder, case bundle folder, or descriptor file."),
    out: Path = OUT_OPTION,
    descriptors: Optional[str] = DESCRIPTORS_OPTION,
    descriptor_file: list[Path] = DESCRIPTOR_FILE_OPTION,
    k: Optional[str] = K_OPTION,
    algorithms: Optional[str] = ALGORITHMS_OPTION,
    preprocessing: Optional[str] = PREPROCESSING_OPTION,
    prefer_few: bool = PREFER_FEW_OPTION,
    seed: int = typer.Option(0, help="Random seed for sampling and clustering."),
    allow_invalid_rows: bool = ALLOW_INVALID_ROWS_OPTION,
    max_pixels: int = MAX_PIXELS_OPTION,
    trust_pickles: bool = TRUST_PICKLES_OPTION,
    follow_links: bool = FOLLOW_LINKS_OPTION,
    force: bool = FORCE_OPTION,
    max_image_bytes: str = MAX_IMAGE_BYTES_OPTION,
    max_descriptor_rows: int = MAX_DESCRIPTOR_ROWS_OPTION,
    max_descriptor_bytes: str = MAX_DESCRIPTOR_BYTES_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    device: str = DEVICE_OPTION,
    precision: str = PRECISION_OPTION,
    image_checks: bool = typer.Option(
        True, help="Measure image quality and vehicle presence for the outlier verdict (one more "
                   "network pass when the input brought its own descriptors)."),
    contamination: Optional[float] = CONTAMINATION_OPTION,
    threshold: list[str] = THRESHOLD_OPTION,
    group_by: str = GROUP_BY_OPTION,
    detectors: Optional[str] = DETECTORS_OPTION,
    mix: list[str] = MIX_OPTION,
    mix_tune: str = MIX_TUNE_OPTION,
    best: Optional[str] = BEST_OPTION,
    map_method: Optional[str] = MAP_METHOD_OPTION,
    notebook: bool = NOTEBOOK_OPTION,
    max_thumbnails: Optional[int] = MAX_THUMBNAILS_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
) -> None:
    """Run the whole pipeline: ingest, describe, cluster, compare (and mix), outliers, report."""
    from vehiclust.describe import DescribeSettings
    from vehiclust.pipeline import RunSettings, run_pipeline

    on = _executor_settings(executor, ray_address)
    settings = RunSettings(
        descriptors=_names(descriptors),
        descriptor_files=list(descriptor_file),
        ingest=_ingest_settings(max_pixels, allow_invalid_rows, trust_pickles, follow_links,
                                max_image_bytes, max_descriptor_rows, max_descriptor_bytes),
        describe=DescribeSettings(decode_threads=workers, max_pixels=max_pixels, device=device,
                                  precision=precision, executor=on),
        cluster=replace(_cluster_settings(k, seed, algorithms, preprocessing, prefer_few), executor=on),
        outliers=_on_executor(_outlier_settings(contamination, threshold, group_by, detectors), on),
        compare=_compare_settings(mix, best, seed, mix_tune),
        image_checks=image_checks,
        report=_report_settings(map_method, notebook, max_thumbnails, seed),
        force=force,
    )
    _print_result(run_pipeline(input, out, settings, _reporter()).run)


@command()
def demo(
    out: Path = typer.Option(Path("vehiclust-demo"), "--out", "-o", help="Run folder for the demo."),
    size: str = typer.Option("default", help="'small' (~1,000 images), 'default' (~5,000) or a number."),
    seed: int = typer.Option(0, help="Seed of the generated collection."),
    k: Optional[str] = K_OPTION,
    case_bundle: Optional[Path] = typer.Option(
        None, help="Also write the demo as the assignment's case bundle (images_paths.csv, "
                   "descriptors/*.pickle, raw_data/) into this folder."),
    mix: Optional[list[str]] = typer.Option(
        None, "--mix", "-m", help="Mixtures to add (see `vehiclust run --help`). Default: all and auto; "
                                  "--mix none for none."),
    mix_tune: str = MIX_TUNE_OPTION,
    best: Optional[str] = BEST_OPTION,
    map_method: Optional[str] = MAP_METHOD_OPTION,
    notebook: bool = NOTEBOOK_OPTION,
) -> None:
    """Build the demo collection (real photographs, cached after the first time), run on it and
    score the result against the demo's ground truth."""
    from vehiclust.demo_run import DEMO_MIXES, run_demo

    mixes = DEMO_MIXES if mix is None else [m for m in mix if m.lower() != "none"]
    result = run_demo(out, size=size, seed=seed, cluster=_cluster_settings(k, 0), reporter=_reporter(),
                      case_bundle=case_bundle, compare=_compare_settings(mixes, best, 0, mix_tune),
                      report_settings=_report_settings(map_method, notebook))
    _print_result(result.run)


@command()
def ingest(
    input: Path = typer.Argument(..., help="Image folder, case bundle folder, or descriptor file."),
    out: Path = OUT_OPTION,
    descriptor_file: list[Path] = DESCRIPTOR_FILE_OPTION,
    allow_invalid_rows: bool = ALLOW_INVALID_ROWS_OPTION,
    max_pixels: int = MAX_PIXELS_OPTION,
    trust_pickles: bool = TRUST_PICKLES_OPTION,
    follow_links: bool = FOLLOW_LINKS_OPTION,
    force: bool = FORCE_OPTION,
    max_image_bytes: str = MAX_IMAGE_BYTES_OPTION,
    max_descriptor_rows: int = MAX_DESCRIPTOR_ROWS_OPTION,
    max_descriptor_bytes: str = MAX_DESCRIPTOR_BYTES_OPTION,
) -> None:
    """Read the input into a run folder: the collection table and any descriptors it brought."""
    from vehiclust.pipeline import ingest_input
    from vehiclust.runfolder import COLLECTION, RunFolder

    settings = _ingest_settings(max_pixels, allow_invalid_rows, trust_pickles, follow_links,
                                max_image_bytes, max_descriptor_rows, max_descriptor_bytes)
    table = ingest_input(input, out, settings, list(descriptor_file), _reporter(), force=force)
    unreadable = int((table["error"] != "").sum())
    console.print(f"[green]done.[/] {len(table):,} rows ({unreadable} unreadable) in {COLLECTION.path(RunFolder(out))}")


@command()
def describe(
    target: Path = typer.Argument(..., help="A run folder, or an INPUT when --out is given."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Ingest TARGET into this run folder first."),
    descriptors: Optional[str] = DESCRIPTORS_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    device: str = DEVICE_OPTION,
    precision: str = PRECISION_OPTION,
    chunk_rows: int = typer.Option(1024, help="Rows per stored chunk: at most this much work is "
                                              "lost when extraction is interrupted."),
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
) -> None:
    """Compute descriptors (resumable: an interrupted run continues where it stopped)."""
    from vehiclust.describe import DescribeSettings
    from vehiclust.pipeline import describe_folder, ingest_input
    from vehiclust.runfolder import RunFolder

    on = _executor_settings(executor, ray_address)
    settings = DescribeSettings(decode_threads=workers, chunk_rows=chunk_rows, device=device,
                                precision=precision, executor=on)  # checked before the ingest
    if out is not None:
        ingest_input(target, out, reporter=_reporter())
    folder = out if out is not None else target
    names = describe_folder(folder, _names(descriptors), settings, _reporter())
    console.print(f"[green]done.[/] descriptors: {', '.join(names)} in {RunFolder(folder).descriptors_dir}")


@command()
def cluster(
    folder: Path = typer.Argument(..., help="Run folder."),
    descriptors: Optional[str] = DESCRIPTORS_OPTION,
    k: Optional[str] = K_OPTION,
    algorithms: Optional[str] = ALGORITHMS_OPTION,
    preprocessing: Optional[str] = PREPROCESSING_OPTION,
    prefer_few: bool = PREFER_FEW_OPTION,
    seed: int = typer.Option(0, help="Random seed."),
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
) -> None:
    """Sweep algorithms x preprocessing x k for each descriptor and select one per descriptor
    by internal metrics and stability (runs.csv says why)."""
    from vehiclust.pipeline import cluster_folder

    settings = replace(_cluster_settings(k, seed, algorithms, preprocessing, prefer_few),
                       executor=_executor_settings(executor, ray_address))
    runs = cluster_folder(folder, _names(descriptors), settings, _reporter())
    for _, row in runs[runs["selected"]].iterrows():
        console.print(f"{row['descriptor']}: k={row['n_clusters']} ({row['algorithm']} on "
                      f"{row['preprocessing']}; {row['reason']})", highlight=False)


@command()
def outliers(
    folder: Path = typer.Argument(..., help="Run folder."),
    contamination: Optional[float] = CONTAMINATION_OPTION,
    threshold: list[str] = THRESHOLD_OPTION,
    group_by: str = GROUP_BY_OPTION,
    detectors: Optional[str] = DETECTORS_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
) -> None:
    """Score every image with each outlier check and write the verdicts (outliers.csv)."""
    from vehiclust.pipeline import outliers_folder
    from vehiclust.runfolder import OUTLIERS, RunFolder

    settings = _on_executor(_outlier_settings(contamination, threshold, group_by, detectors),
                            _executor_settings(executor, ray_address))
    verdicts = outliers_folder(folder, settings, _reporter())
    console.print(f"[green]done.[/] {int(verdicts['is_outlier'].sum())} outliers in {OUTLIERS.path(RunFolder(folder))}")


@command("compare")
def compare_command(
    folder: Path = typer.Argument(..., help="Run folder with a finished cluster stage."),
    mix: list[str] = MIX_OPTION,
    mix_tune: str = MIX_TUNE_OPTION,
    best: Optional[str] = BEST_OPTION,
    k: Optional[str] = K_OPTION,
    algorithms: Optional[str] = ALGORITHMS_OPTION,
    preprocessing: Optional[str] = PREPROCESSING_OPTION,
    prefer_few: bool = PREFER_FEW_OPTION,
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Compare the descriptors' clusterings (comparison.csv, agreement.csv, attributes.csv), add
    mixtures and the consensus, pick the best clustering; then rewrite clusters.csv and the
    report. Give the cluster settings the run used, so mixtures are swept the same way."""
    from vehiclust.pipeline import compare_folder
    from vehiclust.rules import JOINT

    table = compare_folder(folder, _cluster_settings(k, seed, algorithms, preprocessing, prefer_few),
                           _compare_settings(mix, best, seed, mix_tune), _reporter())
    columns = ["name", "n_clusters", "excess_score", "tie", "common_score", "stability", "best"]
    columns += [c for c in (f"ari_{JOINT}", f"nmi_{JOINT}") if c in table.columns]
    console.print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"), highlight=False)


@command()
def report(
    folder: Path = typer.Argument(..., help="Run folder."),
    map_method: Optional[str] = MAP_METHOD_OPTION,
    notebook: bool = NOTEBOOK_OPTION,
    max_thumbnails: Optional[int] = MAX_THUMBNAILS_OPTION,
) -> None:
    """Write clusters.csv, cluster_descriptions.csv, the maps, report.html and report.ipynb."""
    from vehiclust.pipeline import report_folder

    _print_result(report_folder(folder, _report_settings(map_method, notebook, max_thumbnails), _reporter()))


@command()
def export(
    folder: Path = typer.Argument(..., help="Run folder of a finished run."),
    transport_dataset: bool = typer.Option(
        False, "--transport-dataset", help="Write transport_dataset.csv (path, car_id, width, height, "
                                           "brisque) as the assignment's create_dataset.py did."),
    by: Optional[str] = typer.Option(None, "--by", help="Lay images out one folder per 'cluster' or 'reason'."),
    to: Optional[Path] = typer.Option(None, "--to", help="Target folder for --by."),
    copy: bool = typer.Option(False, "--copy", help="Copy the images (default: only write the plan)."),
    link: bool = typer.Option(False, "--link", help="Symlink the images (default: only write the plan)."),
) -> None:
    """Export results. Laying images out is a dry run (a plan CSV) unless --copy or --link."""
    from vehiclust.pipeline import claimed_folder
    from vehiclust.report.export import apply_plan, export_plan, write_transport_dataset
    from vehiclust.runfolder import EXPORT_PLAN

    if not transport_dataset and by is None:
        raise VehiclustError("nothing to export: give --transport-dataset and/or --by cluster|reason --to FOLDER")
    if by is not None and (to is None or (copy and link)):
        raise VehiclustError("--by needs --to FOLDER, and at most one of --copy / --link")
    with claimed_folder(folder) as run:
        if transport_dataset:
            console.print(f"[green]done.[/] {write_transport_dataset(run)}")
        if by is not None:
            plan = export_plan(run, by, to)
            plan_path = EXPORT_PLAN.save(run, plan, by=by)
            console.print(f"{len(plan):,} images in {plan['group'].nunique()} folders; plan: {plan_path}")
            if copy or link:
                placed = apply_plan(plan, "link" if link else "copy", to,
                                    lambda text: console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False))
                console.print(f"[green]done.[/] placed {placed:,} images under {to}")
            else:
                console.print("dry run: nothing copied (add --copy or --link)")


@command("train-head")
def train_head(
    folder: Path = typer.Argument(..., help="Run folder with a computed backbone descriptor."),
    label: str = typer.Option(..., "--label", "-l", help="Collection column to learn, e.g. type or color."),
    backbone: str = typer.Option("efficientnet_lite0", help="Stored descriptor the head sits on."),
    name: Optional[str] = typer.Option(None, help="Name of the new descriptor (default head_<label>)."),
    epochs: int = typer.Option(40, help="Training epochs."),
) -> None:
    """Train a small type/colour head on frozen backbone features; its penultimate layer
    becomes a new descriptor. Held-out accuracy is measured on unseen vehicles."""
    from vehiclust.describe.heads import HeadSettings, train_head as train
    from vehiclust.pipeline import claimed_folder

    with claimed_folder(folder) as run:
        result = train(run, backbone, label, name, HeadSettings(epochs=epochs))
    console.print(f"[green]done.[/] descriptor {result.name}: held-out accuracy "
                  f"{result.holdout_accuracy:.1%} on {result.holdout_rows:,} images of unseen vehicles "
                  f"(majority class {result.majority_accuracy:.1%}); {len(result.classes)} classes")


@command("descriptors")
def list_descriptors() -> None:
    """List the descriptors vehiclust can compute from images."""
    from vehiclust.describe import descriptor_listing

    typer.echo("\n".join(descriptor_listing()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
