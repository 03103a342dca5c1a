"""Chain access: JSON-RPC client, endpoint pool with failover, node monitor, gas oracle, heads.

* ``rpc`` — one HTTP endpoint: pooled keep-alive, batching, typed errors (``errors``), deadlines.
* ``redact`` — credential stripping for every URL that reaches a status, a log or an error.
* ``ws`` — WebSocket subscriptions (newHeads, logs, pending txs), resubscribed on reconnect.
* ``health`` — pure endpoint scoring: consensus tip, lag, error window, hysteresis.
* ``endpoints`` — ``EndpointPool``: probing, read failover, raw-transaction fan-out.
* ``monitor`` — ``NodeStatus`` per endpoint, published as ``node.status``.
* ``basefee`` — pure next-base-fee rules by (chain, fork, node).
* ``gas`` — ``GasOracle`` and ``GasQuote``: fees, L1 data-fee model, ``gas.price``.
* ``heads`` — ``HeadStream``: every block once, in order, with its logs; reorg rollbacks.
* ``service`` — ``ChainServices``: all of the above wired from one ``[[chains]]`` entry.
"""
