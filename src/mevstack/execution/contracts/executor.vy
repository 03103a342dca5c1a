# pragma version 0.4.3
# pragma evm-version cancun
"""
@title mevstack executor
@notice Executes one multi-hop path across Uniswap V2 pairs and V3 pools atomically, calling
        the pools directly.  Reverts unless the start token's balance ends at least
        `min_profit` above where it started.
@dev Roles: the operator (hot key) may only call `execute`; the owner withdraws tokens and
     native balance and sets both roles.  A leaked operator key cannot move funds out: besides
     the start token's profit check, every other token of the path must end at least at its
     starting balance, so even a path through a fake pool cannot pay out inventory.

     Path encoding (packed, 43 bytes per hop, hops back to back):
       pool (20) | token_out (20) | flags (1) | fee_bps (2, V2 only, else 0)
     flags bit 0: 1 = Uniswap V3 pool, 0 = Uniswap V2 pair; bit 1: zero_for_one.
     The input token of hop 0 is `start_token`; the input of hop i is hop i-1's token_out.

     Callbacks are accepted only from the pool this contract is calling at that moment (kept
     in transient storage and cleared after the call); a V2 flash callback additionally needs
     `sender == self`, so a genuine pair swapped by someone else cannot reach it.

     Coinbase share: when `coinbase_bps > 0` the start token must be the wrapped native token
     given at deployment; that share of the profit is unwrapped and paid to block.coinbase in
     native currency (what a block builder counts).  `min_profit` applies to the gross profit,
     before that payment.
"""

from ethereum.ercs import IERC20

interface IWETH:
    def withdraw(wad: uint256): nonpayable

interface IUniswapV2Pair:
    def getReserves() -> (uint112, uint112, uint32): view
    def swap(amount0Out: uint256, amount1Out: uint256, to: address, data: Bytes[1024]): nonpayable

interface IUniswapV3Pool:
    def swap(recipient: address, zeroForOne: bool, amountSpecified: int256, sqrtPriceLimitX96: uint160, data: Bytes[32]) -> (int256, int256): nonpayable

event Executed:
    start_token: indexed(address)
    amount_in: uint256
    profit: uint256
    coinbase_paid: uint256

event OperatorSet:
    operator: indexed(address)

event OwnerSet:
    owner: indexed(address)

HOP_BYTES: constant(uint256) = 43
MAX_HOPS: constant(uint256) = 5
MAX_PATH: constant(uint256) = 215  # HOP_BYTES * MAX_HOPS
# TickMath bounds + 1 / - 1: "no price limit" for an exact-input V3 swap.
MIN_SQRT_RATIO_PLUS_ONE: constant(uint160) = 4295128740
MAX_SQRT_RATIO_MINUS_ONE: constant(uint160) = 1461446703485210103287273052203988822378723970341

owner: public(address)
operator: public(address)
wrapped_native: public(immutable(address))

# The pool being called right now (empty outside a call) and, for V3, the token it is owed.
_callback_pool: transient(address)
_callback_token: transient(address)


@deploy
def __init__(operator: address, owner: address, weth: address):
    assert owner != empty(address) and operator != empty(address), "zero role"
    self.operator = operator
    self.owner = owner
    wrapped_native = weth
    log OperatorSet(operator=operator)
    log OwnerSet(owner=owner)


@payable
@external
def __default__():
    # Receives native currency (WETH.withdraw forwards only a 2300 gas stipend: keep it empty).
    pass


@internal
def _safe_transfer(token: address, to: address, amount: uint256):
    # USDT-style tokens return nothing: check the bool only when one comes back.
    response: Bytes[32] = raw_call(
        token,
        abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=32,
    )
    if len(response) > 0:
        assert convert(response, bool), "transfer failed"


@internal
@view
def _balance(token: address) -> uint256:
    return staticcall IERC20(token).balanceOf(self)


@internal
@pure
def _pool(path: Bytes[MAX_PATH], i: uint256) -> address:
    return convert(convert(slice(path, i * HOP_BYTES, 20), bytes20), address)


@internal
@pure
def _token_out(path: Bytes[MAX_PATH], i: uint256) -> address:
    return convert(convert(slice(path, i * HOP_BYTES + 20, 20), bytes20), address)


@internal
@pure
def _flags(path: Bytes[MAX_PATH], i: uint256) -> uint256:
    return convert(convert(slice(path, i * HOP_BYTES + 40, 1), bytes1), uint256)


@internal
@pure
def _fee_bps(path: Bytes[MAX_PATH], i: uint256) -> uint256:
    return convert(convert(slice(path, i * HOP_BYTES + 41, 2), bytes2), uint256)


@internal
@view
def _v2_amount_out(pair: address, zero_for_one: bool, amount_in: uint256, fee_bps: uint256) -> uint256:
    r0: uint112 = 0
    r1: uint112 = 0
    ts: uint32 = 0
    r0, r1, ts = staticcall IUniswapV2Pair(pair).getReserves()
    reserve_in: uint256 = convert(r0, uint256)
    reserve_out: uint256 = convert(r1, uint256)
    if not zero_for_one:
        reserve_in = convert(r1, uint256)
        reserve_out = convert(r0, uint256)
    with_fee: uint256 = amount_in * (10000 - fee_bps)
    return with_fee * reserve_out // (reserve_in * 10000 + with_fee)


@internal
def _v2_swap(pair: address, zero_for_one: bool, amount_out: uint256, to: address, data: Bytes[1024]):
    # Only a flash swap (non-empty data) calls back; only then is the pair an allowed caller.
    if len(data) > 0:
        self._callback_pool = pair
    if zero_for_one:
        extcall IUniswapV2Pair(pair).swap(0, amount_out, to, data)
    else:
        extcall IUniswapV2Pair(pair).swap(amount_out, 0, to, data)
    if len(data) > 0:
        self._callback_pool = empty(address)


@internal
def _run(path: Bytes[MAX_PATH], first: uint256, token: address, amount: uint256, at_pool: bool) -> uint256:
    """Hops `first`.. of the path; `at_pool`: the input already sits in hop `first`'s pair."""
    n: uint256 = len(path) // HOP_BYTES
    token_in: address = token
    value: uint256 = amount
    funded: bool = at_pool
    for i: uint256 in range(first, n, bound=MAX_HOPS):
        pool: address = self._pool(path, i)
        flags: uint256 = self._flags(path, i)
        zero_for_one: bool = flags & 2 != 0
        # Output goes straight to the next pair when that is a V2 pair (saves a transfer);
        # a V3 pool pulls its input through the callback, so that input must be here.
        recipient: address = self
        if i + 1 < n and self._flags(path, i + 1) & 1 == 0:
            recipient = self._pool(path, i + 1)
        if flags & 1 == 1:
            self._callback_pool = pool
            self._callback_token = token_in
            a0: int256 = 0
            a1: int256 = 0
            limit: uint160 = MAX_SQRT_RATIO_MINUS_ONE
            if zero_for_one:
                limit = MIN_SQRT_RATIO_PLUS_ONE
            a0, a1 = extcall IUniswapV3Pool(pool).swap(recipient, zero_for_one, convert(value, int256), limit, b"")
            self._callback_pool = empty(address)
            if zero_for_one:
                value = convert(-a1, uint256)
            else:
                value = convert(-a0, uint256)
        else:
            if not funded:
                self._safe_transfer(token_in, pool, value)
            out: uint256 = self._v2_amount_out(pool, zero_for_one, value, self._fee_bps(path, i))
            self._v2_swap(pool, zero_for_one, out, recipient, b"")
            value = out
        funded = recipient != self
        token_in = self._token_out(path, i)
    return value


@external
@nonreentrant
def execute(
    start_token: address,
    amount_in: uint256,
    min_profit: uint256,
    coinbase_bps: uint256,
    flash: bool,
    deadline_block: uint256,
    path: Bytes[MAX_PATH],
) -> uint256:
    """
    @notice Run `path` with `amount_in` of `start_token`; returns the gross profit (exact
            balance change of `start_token`).  `flash`: borrow hop 0's output from its V2 pair
            and repay it from the last hop (no inventory needed).  `deadline_block`: 0 = none.
    """
    assert msg.sender == self.operator, "not operator"
    assert deadline_block == 0 or block.number <= deadline_block, "expired"
    n: uint256 = len(path) // HOP_BYTES
    assert n > 0 and n * HOP_BYTES == len(path), "bad path"
    assert coinbase_bps <= 10000, "bad bps"
    before: uint256 = self._balance(start_token)
    # Every other token the path touches must end where it started: a path through a fake
    # pool (chosen by a leaked operator key) cannot pay out the contract's other inventory.
    others: DynArray[address, MAX_HOPS] = []
    held: DynArray[uint256, MAX_HOPS] = []
    for i: uint256 in range(n, bound=MAX_HOPS):
        token: address = self._token_out(path, i)
        if token != start_token and token not in others:
            others.append(token)
            held.append(self._balance(token))
    if flash:
        flags: uint256 = self._flags(path, 0)
        assert flags & 1 == 0, "flash needs a V2 first hop"
        pair: address = self._pool(path, 0)
        out: uint256 = self._v2_amount_out(pair, flags & 2 != 0, amount_in, self._fee_bps(path, 0))
        self._v2_swap(pair, flags & 2 != 0, out, self, abi_encode(start_token, amount_in, path))
    else:
        self._run(path, 0, start_token, amount_in, False)
    for j: uint256 in range(len(others), bound=MAX_HOPS):
        assert self._balance(others[j]) >= held[j], "inventory spent"
    after: uint256 = self._balance(start_token)
    assert after >= before + min_profit, "no profit"
    profit: uint256 = after - before
    paid: uint256 = 0
    if coinbase_bps > 0:
        assert start_token == wrapped_native, "coinbase share needs the wrapped native token"
        paid = profit * coinbase_bps // 10000
        if paid > 0:
            extcall IWETH(wrapped_native).withdraw(paid)
            # Not `send`: a builder's fee recipient may be a contract needing more than 2300 gas.
            raw_call(block.coinbase, b"", value=paid)
    log Executed(start_token=start_token, amount_in=amount_in, profit=profit, coinbase_paid=paid)
    return profit


@external
def uniswapV2Call(sender: address, amount0: uint256, amount1: uint256, data: Bytes[1024]):
    assert msg.sender == self._callback_pool and msg.sender != empty(address), "bad caller"
    assert sender == self, "bad sender"
    self._callback_pool = empty(address)
    start_token: address = empty(address)
    amount_in: uint256 = 0
    path: Bytes[MAX_PATH] = b""
    start_token, amount_in, path = abi_decode(data, (address, uint256, Bytes[MAX_PATH]))
    borrowed: uint256 = amount0 + amount1
    self._run(path, 1, self._token_out(path, 0), borrowed, False)
    # Repay the pair in the token it expects: exactly the amount_in the borrow was priced on.
    # A path that returns less cannot repay: say so rather than fail inside the token.
    assert self._balance(start_token) >= amount_in, "no profit"
    self._safe_transfer(start_token, msg.sender, amount_in)


@external
def uniswapV3SwapCallback(amount0_delta: int256, amount1_delta: int256, data: Bytes[32]):
    pool: address = self._callback_pool
    assert msg.sender == pool and pool != empty(address), "bad caller"
    self._callback_pool = empty(address)
    owed: int256 = amount0_delta
    if amount1_delta > 0:
        owed = amount1_delta
    assert owed > 0, "nothing owed"
    self._safe_transfer(self._callback_token, pool, convert(owed, uint256))


@external
@nonreentrant
def withdraw_token(token: address, to: address, amount: uint256):
    assert msg.sender == self.owner, "not owner"
    self._safe_transfer(token, to, amount)


@external
@nonreentrant
def withdraw_native(to: address, amount: uint256):
    assert msg.sender == self.owner, "not owner"
    raw_call(to, b"", value=amount)


@external
def set_operator(operator: address):
    assert msg.sender == self.owner, "not owner"
    self.operator = operator
    log OperatorSet(operator=operator)


@external
def set_owner(owner: address):
    assert msg.sender == self.owner, "not owner"
    assert owner != empty(address), "zero owner"
    self.owner = owner
    log OwnerSet(owner=owner)
