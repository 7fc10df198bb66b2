"""The analyses of a trained model, each returning a result with to_dict(); their reports.

fairness     group metrics, bootstrap gaps, ThresholdOptimizer (fairness_check.py)
drift        per-feature drift tests and a verdict (drift_analysis_ks.py, live drift)
poisoning    label-flip attacks and a confident-learning defense (data_poisoning.py)
performance  realized and estimated (CBPE) performance per window (monitor_performance.py, live view)
outcomes     the served predictions and their labels as one frame (prediction logs, labels files)
report       text tables, atomic JSON reports and PNG plots
performance_report  the performance analysis' tables, plot and HTML section
html_report  reports/index.html: one self-contained page of every analysis

They import the core (heart.schema, data, model, ...) and never the server (the server's live
drift and performance gauges use drift and performance).
"""
