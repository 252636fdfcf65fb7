"""genflow: reproducible, distributed training of generative image models.

The core library is plain PyTorch + pyarrow; Ray lives in genflow.integrations,
DVC in dvc.yaml and stages/.
"""
__version__ = "0.1.0"
