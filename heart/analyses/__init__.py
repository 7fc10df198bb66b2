"""The analyses of a trained model, each returning a result with to_dict(); their reports.

fairness        group metrics, bootstrap gaps, ThresholdOptimizer (fairness_check.py)
drift           per-feature drift tests and a verdict (drift_analysis_ks.py, live drift)
poisoning       label-flip attacks and a confident-learning defense (data_poisoning.py)
explainability  SHAP over a data set: ranking, additivity, plain words (explainability.py)
performance     realized and estimated (CBPE) performance per window (monitor_performance.py, live view)
outcomes        the served predictions and their labels as one frame (prediction logs, labels files)
twosample       the drift tests in NumPy alone, giving scipy.stats' numbers (the server's live drift)
<name>_report   each analysis at the edge: the text its script prints, its plots, its files and its
                section of the page (card_report: the model card's section)
report          what they share: text tables, atomic JSON reports, PNG figures, a section's inputs
sections        the page's sections, each declared once (key, title, make target, files, builder)
html_report     reports/index.html: one self-contained page of every analysis

They import the core (heart.schema, data, model, ...) and never the server (the server's live
drift and performance gauges use drift and performance). The <name>_report modules import their
analysis for annotations only, so the page and its registry load without SciPy, shap or fairlearn.
"""
