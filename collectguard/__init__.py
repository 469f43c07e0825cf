"""collectguard's application layer: the ``collectguard`` command (:mod:`collectguard.cli`).

The libraries sit below it: ``model/`` (labels, preprocessing, the network, the Classifier),
``train/`` (data, fine-tuning, evaluation) and ``serve/`` (the HTTP API and batch scoring).
Nothing below imports this package.
"""
