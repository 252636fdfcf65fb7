"""Public metric API on feature arrays (numpy or torch): evaluate your own features.

    frechet_distance(real, fake) -> float
    kid(real, fake, n_subsets=100, subset_size=1000, seed=0) -> (mean, std)
    prdc(real, fake, k=5) -> {"precision", "recall", "density", "coverage"}
    mixture_modes(samples, centers, std) -> {"modes", "high_quality", "reverse_kl"}
    discrete_modes(classes, n_modes) -> {"modes", "reverse_kl"}
    auroc(scores, is_anomaly) -> float
    roc_curve(scores, is_anomaly) -> (fpr, tpr);  roc_on_grid(scores, is_anomaly, points=101) -> (fpr, tpr)
"""
from genflow.metrics.distances import frechet_distance, frechet_from_stats, gaussian_stats
from genflow.metrics.kernel_distance import kid
from genflow.metrics.mixtures import discrete_modes, mixture_modes
from genflow.metrics.manifolds import prdc
from genflow.metrics.ranking import auroc, roc_curve, roc_on_grid

__all__ = ["auroc", "discrete_modes", "frechet_distance", "frechet_from_stats", "gaussian_stats", "kid",
           "mixture_modes", "prdc", "roc_curve", "roc_on_grid"]
