"""The train stage: the one engine (phases, EMA, reporters), the worker's run of one seed, and
checkpoints. Plain PyTorch; which process runs a worker is decided in genflow.launch."""
