"""Public metric API on feature arrays (numpy or torch): evaluate your own features."""
from genflow.metrics.distances import frechet_distance, frechet_from_stats, gaussian_stats
from genflow.metrics.mixtures import mixture_modes

__all__ = ["frechet_distance", "frechet_from_stats", "gaussian_stats", "mixture_modes"]
