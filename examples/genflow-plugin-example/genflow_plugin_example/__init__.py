"""An example genflow model plugin: the ``tinygan`` family (spec.py: its typed config, torch-free;
model.py: its networks and training phases)."""
