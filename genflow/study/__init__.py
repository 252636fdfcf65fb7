"""A study: every model tuned with the same search budget, retrained, compared (issue 28)."""
