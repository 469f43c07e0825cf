"""The review side: a store of human verdicts on model output, the /review page and its API,
the active-learning queue, agreement figures and the export of reviews back into training."""
