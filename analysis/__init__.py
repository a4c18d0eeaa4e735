"""Analysis: clustering fingerprints into basins, the deep-vs-noise scorecard, and reports.

Functions on arrays (no file I/O, no imports of training/ or fingerprint/): ``options`` (what to
do), ``scorecard`` (:func:`~analysis.scorecard.analyze`), ``calibration`` (intervals, verdicts),
``results`` (the typed :class:`~analysis.results.AnalysisResult` and ``summary.json``), ``report``
(HTML from ``templates/``, pictures from ``plots``). :mod:`fingerprint.pipeline` glues them to zoos.
"""
