"""Markets: exact DEX pool math, pool discovery and log-driven pool state.

* ``uniswap_v2`` / ``uniswap_v3/`` — pure integer ports of the contracts' math (no I/O);
* ``base`` — the pool interface (``PoolKind``, ``PoolState``, ``SwapResult``, ``quote_exact_in``);
* ``pools/`` — one module per DEX kind (state, quotes, discovery, loading, log decoding), and
  ``pools/v3_lens`` with ``contracts/v3_lens.vy``: whole V3 pools in one call via state override;
* ``registry`` — discovery in adaptive log ranges, token metadata, admission rules;
* ``tokens`` — token metadata/safety cache (memory or the store);
* ``state`` — ``PoolStore``: per-block log updates, bounded history, rollback, spot checks;
* ``feed`` — the chain's head stream applied to a ``PoolStore``.
"""
