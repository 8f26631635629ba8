"""Stage 3: clustering sweeps, metrics and selection.

Where things are: :mod:`.settings` (what is swept, ``ClusterSettings``), :mod:`.preprocess`
(the spaces: std / l2 / PCA / UMAP, scikit-learn transformers and pipelines), :mod:`.algorithms`
(scikit-learn estimators and the ``ALGORITHMS`` registry), :mod:`.metrics` (internal metrics and
label checks), :mod:`.select` (where k is chosen: the grid, the score, the selection rule),
:mod:`.clustering` (one stored clustering), :mod:`.sweep` (the stage itself: runs.csv and
clusterings/<descriptor>.npz).
"""

from vehiclust.cluster.algorithms import ALGORITHMS, AlgorithmSpec
from vehiclust.cluster.clustering import Clustering
from vehiclust.cluster.settings import ClusterSettings, k_grid, parse_k, parse_k_range
from vehiclust.cluster.sweep import cluster

__all__ = ["ALGORITHMS", "AlgorithmSpec", "ClusterSettings", "Clustering", "cluster", "k_grid",
           "parse_k", "parse_k_range"]
