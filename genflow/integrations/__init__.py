"""Ray and Optuna: the only modules of genflow that import them.

Ray reads these settings when it is imported, so they are set here, before any module of
this package imports it.
"""
import os

# no phone-home connection for Ray to wait on (this network refuses it)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Seeds' progress lines differ only in their numbers (seed, step, losses), which Ray's log
# deduplication folds into "[repeated 4x across cluster]": a person would see one seed only.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
