"""Batch outlier detection over the ledger: detectors behind one contract
(:mod:`rules.detectors.base`), one per module and registered in
:mod:`rules.detectors.registry`, their combination, the detect run and human review."""
