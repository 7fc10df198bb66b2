"""Heart-disease prediction: schema, data, model, serving and analyses in one package.

The top-level scripts (train.py, heart_fastapi.py, ...) are thin command-line entry points
over this package; nothing here imports a script.
"""

__version__ = "1.0.0"
