"""Equal-budget studies (issue 28): every model of a study tuned with the same search budget,
its winner and its hand-set config retrained over the same seeds, then compared."""
