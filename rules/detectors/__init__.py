"""Batch outlier detection over the ledger (issue 3): detectors behind one contract
(:mod:`rules.detectors.base`), their combination, the detect run and human review."""
