"""Errors of the analysis layer: ValueErrors, scikit-learn's way (the CLI shows them as one line)."""


class AnalysisError(ValueError):
    """Bad analysis input or settings; the message is one line for people."""
