"""The CryoEM single-particle workload: request model, simulator with known truth, the
processing stages (RELION CPU programs plus a CTF estimator) and the local driver.
docs/cryoem.md describes what exists and what does not yet."""
