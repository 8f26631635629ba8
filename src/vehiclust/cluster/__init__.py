"""Stage 3: clustering sweeps, metrics and selection.

Where things are: :mod:`.settings` (what is swept, ``ClusterSettings``), :mod:`.preprocess`
(the spaces: std / l2 / PCA / UMAP), :mod:`.algorithms` (estimators and the ``ALGORITHMS``
registry), :mod:`.metrics` (internal metrics and label checks), :mod:`.select` (the selection
rule), :mod:`.sweep` (the stage itself: runs.csv and clusterings/<descriptor>.npz).
"""

from vehiclust.cluster.algorithms import ALGORITHMS, Algorithm
from vehiclust.cluster.settings import ClusterSettings, k_grid, parse_k, parse_k_range
from vehiclust.cluster.sweep import cluster

__all__ = ["ALGORITHMS", "Algorithm", "ClusterSettings", "cluster", "k_grid", "parse_k",
           "parse_k_range"]
