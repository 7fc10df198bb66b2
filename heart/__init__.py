"""Heart-disease prediction: schema, data, model, serving and analyses in one package.

Four wings that read top-down: the scripts -> {serving, analyses, clients} -> the core (the
modules here) -> schema. A wing imports the core and, where named, another wing's public module
(clients use serving.contract; live drift uses analyses.drift and analyses.performance); the
core imports no wing; nothing imports a script (tests/test_layout.py checks it).
"""

__version__ = "1.0.0"
