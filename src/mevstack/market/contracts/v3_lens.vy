# pragma version ~=0.4.3
"""
@title V3 pool reader
@notice Never deployed: placed by an eth_call state override.  Reads one Uniswap V3 pool's
        price, tick, liquidity and every initialised tick (liquidity gross and net) in the
        bitmap words [first_word, first_word + word_count) in a single call.
"""

interface Pool:
    def slot0() -> (uint160, int24, uint16, uint16, uint16, uint8, bool): view
    def liquidity() -> uint128: view
    def tickBitmap(word: int16) -> uint256: view
    def ticks(tick: int24) -> (uint128, int128, uint256, uint256, int56, uint160, uint32, bool): view

struct TickData:
    tick: int24
    gross: uint128
    net: int128

struct PoolData:
    sqrt_price_x96: uint160
    tick: int24
    liquidity: uint128
    ticks: DynArray[TickData, 4096]


@external
@view
def read(pool: address, spacing: int24, first_word: int16, word_count: uint256) -> PoolData:
    sqrt_price: uint160 = 0
    tick: int24 = 0
    a: uint16 = 0
    b: uint16 = 0
    c: uint16 = 0
    d: uint8 = 0
    e: bool = False
    sqrt_price, tick, a, b, c, d, e = staticcall Pool(pool).slot0()
    out: PoolData = PoolData(
        sqrt_price_x96=sqrt_price, tick=tick, liquidity=staticcall Pool(pool).liquidity(), ticks=[]
    )
    for i: uint256 in range(word_count, bound=8192):
        word_pos: int16 = first_word + convert(i, int16)
        word: uint256 = staticcall Pool(pool).tickBitmap(word_pos)
        if word == 0:
            continue
        for bit: uint256 in range(256):
            if word & (1 << bit) == 0:
                continue
            t: int24 = (convert(word_pos, int24) * 256 + convert(bit, int24)) * spacing
            gross: uint128 = 0
            net: int128 = 0
            x0: uint256 = 0
            x1: uint256 = 0
            x2: int56 = 0
            x3: uint160 = 0
            x4: uint32 = 0
            x5: bool = False
            gross, net, x0, x1, x2, x3, x4, x5 = staticcall Pool(pool).ticks(t)
            out.ticks.append(TickData(tick=t, gross=gross, net=net))
    return out
