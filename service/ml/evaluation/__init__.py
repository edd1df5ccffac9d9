"""``soundalike eval``: measure a checkpoint against the issue's targets, the DSP baseline beside every
retrieval number. ``evaluate(path)`` returns the report dict; ``report`` writes it as JSON, markdown
and plots."""

from service.ml.evaluation.run import evaluate

__all__ = ["evaluate"]
