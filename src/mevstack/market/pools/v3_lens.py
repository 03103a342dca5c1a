"""Reading whole V3 pools in one eth_call each, with our Vyper reader placed by a state override.

A pool's bitmap spans up to 6,932 words (tick spacing 1); reading it word by word costs one
JSON-RPC call per word.  ``contracts/v3_lens.vy`` walks the words and the initialised ticks inside
the EVM instead and returns price, tick, liquidity and every tick's liquidity gross/net.  It is
never deployed: each eth_call places its runtime code at ``LENS_ADDRESS`` through the call's
state-override argument, which geth, erigon, reth, nethermind and anvil accept.  The bytecode is
compiled from source on first use (never committed).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from mevstack.market import abi
from mevstack.market.errors import MarketError

LENS_ADDRESS = "0x" + keccak(text="mevstack.market.v3_lens")[:20].hex()
# Words per call: bounds the gas of one call well below common eth_call gas caps (~2,600 gas per
# cold word read, plus the ticks found).
WORDS_PER_CALL = 1024
_SOURCE = Path(__file__).resolve().parent.parent / "contracts" / "v3_lens.vy"
_READ = abi.selector("read(address,int24,int16,uint256)")
_RESULT = ["(uint160,int24,uint128,(int24,uint128,int128)[])"]


@functools.cache
def runtime_code() -> str:
    """The reader's runtime bytecode as 0x-hex (compiled once per process)."""
    import vyper  # imported lazily: loading the compiler costs about a second

    try:
        out = vyper.compile_code(
            _SOURCE.read_text(encoding="utf-8"), output_formats=["bytecode_runtime"]
        )
    except Exception as exc:  # the compiler raises many unrelated types; one line is enough
        raise MarketError(f"cannot compile {_SOURCE.name}: {exc}") from None
    code = str(out["bytecode_runtime"])
    return code if code.startswith("0x") else "0x" + code


def call(pool: str, spacing: int, first_word: int, count: int, block: int) -> tuple[str, list[Any]]:
    """The eth_call that reads ``count`` words of ``pool`` from ``first_word`` at ``block``."""
    data = (
        "0x"
        + (
            bytes.fromhex(_READ[2:])
            + encode(["address", "int24", "int16", "uint256"], [pool, spacing, first_word, count])
        ).hex()
    )
    return (
        "eth_call",
        [{"to": LENS_ADDRESS, "data": data}, hex(block), {LENS_ADDRESS: {"code": runtime_code()}}],
    )


def decode_result(data: str) -> tuple[int, int, int, list[tuple[int, int, int]]]:
    """(sqrt price, tick, liquidity, [(tick, gross, net), ...]) from the reader's answer."""
    ((price, tick, liquidity, ticks),) = decode(_RESULT, bytes.fromhex(data[2:]))
    return int(price), int(tick), int(liquidity), [(int(t), int(g), int(n)) for t, g, n in ticks]
