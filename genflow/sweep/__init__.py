"""The sweep stage, Ray-free: search spaces (params' ``sweeps:``), one trial's config and probe,
and the results folder. Ray Tune and Optuna run it from genflow.integrations.ray_tune."""
