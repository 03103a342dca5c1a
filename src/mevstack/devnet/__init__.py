"""The local devnet: anvil chains, real Uniswap deployments, and market activity."""
