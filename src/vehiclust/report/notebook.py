"""``report.ipynb``: the report's analysis as cells a data scientist can edit and re-run.

The notebook loads the run folder through :func:`vehiclust.load_run` (it recomputes nothing),
so it executes in seconds and offline. It is built with nbformat and executed with nbclient;
when execution fails, the unexecuted notebook is kept and the reason returned, the run goes on.

The run folder holds files from elsewhere (its thumbnails, whatever was in ``--out``), so the
kernel does not start there: it starts in an empty private folder with a safe import path
(``PYTHONSAFEPATH``), its IPython profile under the user cache, and finds the run folder through
``VEHICLUST_RUN_DIR``; a ``matplotlib.py`` lying in the run folder is never imported.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vehiclust.report.descriptions import RULE
from vehiclust.runfolder import AGREEMENT, COMPARISON, REPORT_NOTEBOOK, RunFolder, atomic_path
from vehiclust.thirdparty import configure_process, state_env

CELL_TIMEOUT_S = 300
MAX_SOCKET_PATH = 103  # bytes of a Unix socket's path: 108 on Linux, 104 on macOS, with its NUL


def build_notebook(run: RunFolder) -> nbformat.NotebookNode:
    md, code = new_markdown_cell, new_code_cell
    cells = [
        md("# vehiclust: what is in this collection\n\n"
           "Every cell reads the run folder this notebook sits in through `vehiclust.load_run`; "
           "nothing is recomputed, so the notebook re-runs in seconds. Edit freely."),
        code("import os\n\nimport numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\nimport vehiclust\n\n"
             "RUN_DIR = os.environ.get(\"VEHICLUST_RUN_DIR\", \".\")  # the run folder (this notebook's folder)\n"
             "run = vehiclust.load_run(RUN_DIR)\n"
             "print(f\"{len(run.clusters):,} images; best clustering: {run.best_descriptor}\")\n"
             "run.clusters.head()"),
        md("## The best clustering, in words\n\nEach cluster's name and sentence come from "
           f"`cluster_evidence.csv`: {RULE}."),
        code("run.descriptions.style.format({\"share\": \"{:.1%}\"}).hide(axis=\"index\")"),
        md("## Typical images per cluster (closest to the centre)"),
        code("for cluster in run.descriptions[\"cluster\"]:\n"
             "    figure = run.show_cluster(cluster, n=10)\n"
             "    plt.show()"),
        md("## Maps\n\nUMAP of each descriptor (coordinates in `maps/`), coloured by its own clustering "
           "or by any column of clusters.csv."),
        code("figure = run.plot_map(color_by=\"cluster\")\nplt.show()"),
        code("for column in [c for c in (\"type\", \"color\", \"outlier_reasons\") if c in run.clusters.columns]:\n"
             "    figure = run.plot_map(color_by=column)\n"
             "    plt.show()"),
        md("## How each descriptor's clustering was chosen\n\nThe selected run of every descriptor, then "
           "the metrics of every run against the number of clusters."),
        code("selected = run.runs[run.runs[\"selected\"].astype(bool)]\n"
             "selected[[\"descriptor\", \"preprocessing\", \"algorithm\", \"params\", \"n_clusters\", "
             "\"silhouette\", \"davies_bouldin\", \"stability\", \"score\"]]"),
        code("metrics = [\"silhouette\", \"davies_bouldin\", \"stability\", \"score\"]\n"
             "for descriptor, runs in run.runs.groupby(\"descriptor\", sort=False):\n"
             "    figure, axes = plt.subplots(1, len(metrics), figsize=(14, 3))\n"
             "    for (prep, algo), family in runs.groupby([\"preprocessing\", \"algorithm\"]):\n"
             "        family = family.sort_values(\"n_clusters\")\n"
             "        for ax, metric in zip(axes, metrics):\n"
             "            ax.plot(family[\"n_clusters\"], family[metric], marker=\".\", label=f\"{algo} / {prep}\")\n"
             "    for ax, metric in zip(axes, metrics):\n"
             "        ax.set_title(metric); ax.set_xlabel(\"clusters\")\n"
             "    figure.suptitle(descriptor)\n"
             "    axes[-1].legend(fontsize=6, bbox_to_anchor=(1, 1))\n"
             "    plt.show()"),
        *_comparison_cells(run),
        md("## Outliers"),
        code("reasons = run.clusters[\"outlier_reasons\"].fillna(\"\").str.split(\";\").explode()\n"
             "reasons[reasons != \"\"].value_counts()"),
        code("outliers = run.clusters[run.clusters[\"is_outlier\"].astype(bool)]\n"
             "for reason in reasons[reasons != \"\"].value_counts().index:\n"
             "    rows = outliers[outliers[\"outlier_reasons\"].str.contains(reason, regex=False)]\n"
             "    rows = rows.sort_values(\"outlier_score\", ascending=False).index[:10]\n"
             "    figure = run.montage(rows, title=f\"{reason}: highest scores\")\n"
             "    plt.show()"),
        md("## Next steps\n\n- `vehiclust export . --by cluster --to FOLDER --copy` lays the images out "
           "one folder per cluster (a dry run without `--copy`/`--link`).\n"
           "- `run.evidence` holds every share and median behind the descriptions."),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def _comparison_cells(run: RunFolder) -> list:
    """The comparison section, when the compare stage wrote its tables."""
    md, code = new_markdown_cell, new_code_cell
    if not COMPARISON.exists(run):
        return []
    cells = [
        md("## Comparing descriptors and mixtures\n\nEvery descriptor's, mixture's and the consensus's "
           "selected clustering on criteria comparable across them (`comparison.csv`; the rule that picked "
           "the delivered clustering is in `best.json`), what each one groups (`attributes.csv`) and "
           "how far they agree (`agreement.csv`)."),
        code("columns = [\"name\", \"n_clusters\", \"excess_score\", \"tie\", \"eligible_note\", \"common_score\",\n"
             "           \"stability\", \"identity_lift\",\n"
             "           \"ari_type+color\", \"nmi_type+color\", \"best\", \"captures\"]\n"
             "run.comparison[[c for c in columns if c in run.comparison.columns]]"),
        code("run.attributes.pivot(index=\"clustering\", columns=\"attribute\", values=\"ami\").round(2)"),
        code("run.agreement_matrix(\"ari\").round(2)"),
        code("pair = run.agreement.sort_values(\"ari\").iloc[0]  # the two that disagree most\n"
             "table = run.contingency(pair[\"a\"], pair[\"b\"])\n"
             "figure, ax = plt.subplots(figsize=(8, 5))\n"
             "ax.imshow(table.div(table.sum(axis=1), axis=0), cmap=\"Blues\", aspect=\"auto\")\n"
             "ax.set_xlabel(pair[\"b\"]); ax.set_ylabel(pair[\"a\"])\n"
             "ax.set_title(\"where each cluster of one went in the other (row shares)\")\n"
             "plt.show()"),
    ]
    return cells if AGREEMENT.exists(run) and len(AGREEMENT.load(run)) else cells[:3]


def kernel_env(run_dir: Path | str | None = None) -> dict[str, str]:
    """The kernel imports the same vehiclust as the process that writes the notebook (an
    uninstalled checkout included), and nothing from its working folder or the run folder."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in state_env().items()}}
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    env["PYTHONPATH"] = os.pathsep.join([package_parent, *inherited])
    env["PYTHONSAFEPATH"] = "1"  # no script folder or working folder at the head of sys.path
    if run_dir is not None:
        env["VEHICLUST_RUN_DIR"] = str(Path(run_dir).resolve())
    return env


def import_client() -> None:
    """Import what executing imports in this process (nbclient, the kernelspec lookup, IPython),
    before executing in a thread beside matplotlib: pyplot reads ``sys.modules["IPython"]``,
    and a module half imported by the other thread breaks it."""
    import IPython  # noqa: F401
    import ipykernel.kernelspec  # noqa: F401
    import nbclient  # noqa: F401

    configure_process()


def execute_notebook(notebook: nbformat.NotebookNode, run_dir: Path | str) -> None:
    """Run every cell in a kernel started in an empty private folder (see the module's note)."""
    from nbclient import NotebookClient

    configure_process()  # the connection file goes under the user cache, not ~/.local
    with tempfile.TemporaryDirectory(prefix="vehiclust-kernel-") as workdir, \
            tempfile.TemporaryFile("w+", prefix="vehiclust-kernel-stderr-") as kernel_stderr:
        try:
            NotebookClient(notebook, timeout=CELL_TIMEOUT_S, km=kernel_manager(workdir),
                           resources={"metadata": {"path": workdir}}).execute(env=kernel_env(run_dir),
                                                                              stderr=kernel_stderr)
        finally:
            _warn_kernel_stderr(kernel_stderr)


def kernel_manager(workdir: str):
    """The kernel's manager. Kernel and client talk over Unix sockets in the private folder
    (ZeroMQ's ipc transport), not over TCP ports on localhost that any local user can reach
    (ipykernel warns of those at every start); over TCP only where sockets cannot be made
    (Windows) or the folder's path is too long for a socket's name."""
    from jupyter_client.manager import KernelManager

    prefix = os.path.join(workdir, "kernel")
    if os.name != "posix" or len(prefix) + len("-65535") > MAX_SOCKET_PATH:
        return KernelManager(kernel_name="python3")
    return KernelManager(kernel_name="python3", transport="ipc", ip=prefix)


class KernelWarning(UserWarning):
    """A line the notebook's kernel wrote to its stderr (its TCP notice, say)."""


def _warn_kernel_stderr(kernel_stderr) -> None:
    """The kernel's own stderr goes through Python's warnings, so that the CLI summarises it at
    the end instead of it landing between progress lines."""
    kernel_stderr.seek(0)
    for line in kernel_stderr.read().splitlines():
        if line.strip():
            warnings.warn(f"notebook kernel: {line.strip()}", KernelWarning, stacklevel=2)


def _last_line(text: str) -> str:
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def write_notebook(run: RunFolder, execute: bool = True) -> str:
    """Write ``report.ipynb`` (executed when possible); returns what happened, in words."""
    notebook = build_notebook(run)
    status = "written, not executed"
    if execute:
        try:
            execute_notebook(notebook, run.root)
            status = "executed"
        except Exception as exc:  # noqa: BLE001 (a failed notebook must not fail the run)
            notebook = build_notebook(run)
            status = f"written, not executed: {type(exc).__name__}: {_last_line(str(exc))}"
    with atomic_path(REPORT_NOTEBOOK.path(run)) as tmp:
        nbformat.write(notebook, str(tmp))
    return status
