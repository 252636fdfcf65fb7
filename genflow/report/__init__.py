"""The report stage: per-dataset tables with CIs, ranks and tests, plots, and the HTML page."""
