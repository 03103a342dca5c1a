"""mevstack: multi-chain MEV infrastructure — exact pool state, opportunities, safe execution."""

__version__ = "0.1.0"
