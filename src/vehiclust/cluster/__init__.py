"""Stage 3: clustering sweeps, metrics and selection."""

from vehiclust.cluster.sweep import ClusterSettings, cluster, clustering_path, parse_k_range

__all__ = ["ClusterSettings", "cluster", "clustering_path", "parse_k_range"]
