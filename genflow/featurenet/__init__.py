"""The featurenet stage: the feature space every sample metric is computed in (a classifier
trained per dataset, or pytorch-fid's Inception-v3 when its weights are given)."""
