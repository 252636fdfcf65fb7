"""The evaluate stage: the protocol (reference rows, floors, seeds, the metrics files), what a
model's samples and likelihoods score, one module per non-generative task, and the pictures."""
