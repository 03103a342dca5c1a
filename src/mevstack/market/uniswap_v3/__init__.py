"""Uniswap V3 pool math as exact integer ports of the core libraries, one module per library.

``full_math`` (FullMath, UnsafeMath), ``tick_math`` (TickMath), ``sqrt_price_math``
(SqrtPriceMath), ``swap_math`` (SwapMath), ``tick_bitmap`` (TickBitmap), ``liquidity_math``
(LiquidityMath) and ``swap`` (the loop of ``UniswapV3Pool.swap``).  Reverts are typed
:class:`mevstack.market.errors.MathRevert` errors carrying the contract's revert code.
"""
