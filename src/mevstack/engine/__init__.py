"""The engine: wires chains, markets, strategies, execution and services into one process."""
