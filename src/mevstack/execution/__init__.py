"""Execution: executor contract, simulation, signing, nonces, routes, tracking, risk."""
