"""Configuration: the TOML file of docs/contracts.md loaded into typed, validated settings.

Every key of the documented format is honoured; an unknown key, a bad address, URL or amount is a
``ConfigError`` whose one line names the file and the key.  Environment variables
``MEVSTACK_<SECTION>_<KEY>`` override scalar keys of the top-level sections.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from eth_utils.address import to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from mevstack.errors import ConfigError

if TYPE_CHECKING:
    from mevstack.exploits.settings import ExploitSettings

DEFAULT_CONFIG_PATH = Path("mevstack.toml")

# Chains with a public mempool worth backrunning (backrun is on by default only there).
PUBLIC_MEMPOOL_CHAIN_IDS = frozenset({1, 137})

# The native currency's symbol by chain id, for chains whose config gives no ``native_symbol``.
NATIVE_SYMBOLS: dict[int, str] = {
    1: "ETH",
    10: "ETH",
    8453: "ETH",
    42161: "ETH",
    11155111: "ETH",
    31337: "ETH",
    137: "POL",
    80002: "POL",
    56: "BNB",
    43114: "AVAX",
}

_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH32_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _checksum(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return str(to_checksum_address(value))


def _hash32(value: str) -> str:
    if not isinstance(value, str) or not _HASH32_RE.match(value):
        raise ValueError(f"not a 32-byte hex value: {value!r}")
    return value.lower()


def _wei(value: object) -> int:
    """Amounts are decimal strings of integers (ints are accepted too); never floats."""
    if isinstance(value, bool):
        raise ValueError("expected a decimal string of wei, got a boolean")
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        amount = int(value)
    else:
        raise ValueError(f"expected a decimal string of wei, got {value!r}")
    if amount < 0 or amount >= 2**256:
        raise ValueError(f"wei amount out of range: {amount}")
    return amount


def _url(schemes: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"not a {'/'.join(schemes)} URL: {value!r}")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in URL {value!r}") from exc
        return value

    return AfterValidator(check)


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lowercase letters, digits, '-' and '_', max 64)"
        )
    return value


Address = Annotated[str, AfterValidator(_checksum)]
Hash32 = Annotated[str, AfterValidator(_hash32)]
Wei = Annotated[int, BeforeValidator(_wei)]
HttpUrl = Annotated[str, _url(("http", "https"))]
WsUrl = Annotated[str, _url(("ws", "wss"))]
Name = Annotated[str, AfterValidator(_name)]
Port = Annotated[int, Field(ge=1, le=65535)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class EngineConfig(_Section):
    mode: Literal["observe", "paper", "live"] = "observe"
    auto_execute: bool = False
    state_dir: str = ".mevstack"


class DatabaseConfig(_Section):
    url: str = "sqlite:///.mevstack/mevstack.db"

    @model_validator(mode="after")
    def _scheme(self) -> DatabaseConfig:
        scheme = urlsplit(self.url).scheme.split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(f"url: expected sqlite:///… or postgresql://…, got {self.url!r}")
        return self


class BusConfig(_Section):
    url: str = "memory://"

    @model_validator(mode="after")
    def _scheme(self) -> BusConfig:
        parts = urlsplit(self.url)
        if parts.scheme == "memory":
            return self
        if parts.scheme in ("redis", "rediss") and parts.hostname:
            return self
        raise ValueError(f"url: expected memory:// or redis://host:port/db, got {self.url!r}")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    engine_port: Port = 8082
    standby_port: Port = 8091
    gateway_port: Port = 8093
    ws_port: Port = 8094
    dashboard_port: Port = 5002
    backends: list[HttpUrl] = Field(default_factory=lambda: ["http://127.0.0.1:8082"])
    cors_origins: list[HttpUrl] = Field(
        default_factory=lambda: ["http://127.0.0.1:5002", "http://localhost:5002"]
    )
    public_read: bool = True
    rate_limit_per_token: PositiveInt = 200
    rate_limit_per_address: PositiveInt = 100
    rate_limit_window_s: PositiveFloat = 1.0
    # Peers whose X-Forwarded-For is believed; everyone else is rate-limited by its own address.
    trusted_proxies: list[Annotated[str, AfterValidator(_ip_network)]] = Field(default_factory=list)
    # WebSocket admission and slow-consumer limits (handshakes beyond a cap are refused).
    ws_max_connections: PositiveInt = 1000
    ws_max_connections_per_address: PositiveInt = 50
    ws_client_queue: PositiveInt = 1000
    ws_max_buffered_bytes: int = Field(default=512 * 1024, ge=64 * 1024)


class AuthToken(_Section):
    name: Name
    scopes: list[Literal["read", "trade", "admin"]] = Field(min_length=1)
    sha256: str

    @model_validator(mode="after")
    def _digest(self) -> AuthToken:
        if not _SHA256_RE.match(self.sha256):
            raise ValueError("sha256: expected 64 lowercase hex digits (the token's SHA-256)")
        return self


class AuthConfig(_Section):
    tokens: list[AuthToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tokens: duplicate token name {dupes[0]!r}")
        return self


class ExecutionConfig(_Section):
    keystore: str = ".mevstack/key.json"
    password_env: str = "MEVSTACK_KEY_PASSWORD"


class DexConfig(_Section):
    name: Name
    kind: Literal["uniswap_v2", "uniswap_v3"]
    factory: Address
    fee_bps: int | None = Field(default=None, ge=0, lt=10_000)
    init_code_hash: Hash32 | None = None

    @model_validator(mode="after")
    def _fee(self) -> DexConfig:
        if self.kind == "uniswap_v2" and self.fee_bps is None:
            raise ValueError("fee_bps: required for a uniswap_v2 dex (30 for Uniswap V2 itself)")
        if self.kind == "uniswap_v3" and self.fee_bps is not None:
            raise ValueError("fee_bps: not used by uniswap_v3 (each pool carries its own fee)")
        return self


class ChainConfig(_Section):
    name: Name
    chain_id: int = Field(ge=1)
    rpc: list[HttpUrl]
    ws: list[WsUrl] = Field(default_factory=list)
    block_time: float = Field(default=12.0, gt=0)
    base_tokens: list[Address] = Field(default_factory=list)
    wrapped_native: Address
    executor: Address | None = None
    route: Literal["public", "private", "bundle"] = "public"
    relays: list[HttpUrl] = Field(default_factory=list)
    strategies: list[Literal["arbitrage", "backrun"]] | None = None
    max_hops: int = Field(default=3, ge=2, le=4)
    confirmations: int = Field(default=2, ge=0)
    resubmit_after_blocks: int = Field(default=5, ge=1)
    min_net_profit_wei: Wei = 0
    max_trade_wei: Wei = 0
    daily_loss_limit_wei: Wei = 0
    native_symbol: str | None = Field(default=None, min_length=1, max_length=12)
    operator_balance_floor_wei: Wei = 0
    executor_balance_floor_wei: Wei = 0
    dexes: list[DexConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ChainConfig:
        if not self.rpc:
            raise ValueError("rpc: a chain needs at least one RPC endpoint")
        if self.route in ("private", "bundle") and not self.relays:
            raise ValueError(f"relays: route = {self.route!r} needs at least one relay URL")
        names = [d.name for d in self.dexes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dexes: duplicate dex name {dupes[0]!r}")
        return self

    @property
    def symbol(self) -> str:
        """The native currency's symbol: ``native_symbol``, else known by chain id, else
        ``"native"`` (amounts of two chains are never added up, whatever their symbols)."""
        return self.native_symbol or NATIVE_SYMBOLS.get(self.chain_id, "native")

    @property
    def active_strategies(self) -> list[str]:
        """Configured strategies, or the default: backrun only where a public mempool exists."""
        if self.strategies is not None:
            return list(self.strategies)
        if self.chain_id in PUBLIC_MEMPOOL_CHAIN_IDS:
            return ["arbitrage", "backrun"]
        return ["arbitrage"]


class Settings(_Section):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    chains: list[ChainConfig] = Field(default_factory=list)
    # Validated by mevstack.exploits.settings (see there for the keys); kept raw here so the
    # exploit feed owns its own schema.
    exploits: dict[str, Any] = Field(default_factory=dict)
    notify: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_chains(self) -> Settings:
        for attr in ("name", "chain_id"):
            values = [getattr(c, attr) for c in self.chains]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"chains: duplicate chain {attr} {dupes[0]!r}")
        return self

    def chain(self, name: str) -> ChainConfig:
        for chain in self.chains:
            if chain.name == name:
                return chain
        known = ", ".join(c.name for c in self.chains) or "none configured"
        raise ConfigError(f"no chain named {name!r} in the config (chains: {known})")

    def exploit_settings(self) -> ExploitSettings:
        """The typed ``[exploits]`` and ``[notify]`` tables (validated when the file loads)."""
        from mevstack.exploits.settings import parse_exploit_settings

        return parse_exploit_settings(
            self.exploits, self.notify, [(c.name, c.wrapped_native) for c in self.chains]
        )


# Sections whose scalar keys MEVSTACK_<SECTION>_<KEY> may override.
_ENV_SECTIONS: dict[str, type[_Section]] = {
    "engine": EngineConfig,
    "database": DatabaseConfig,
    "bus": BusConfig,
    "server": ServerConfig,
    "execution": ExecutionConfig,
}


def _scalar_fields(model: type[_Section]) -> set[str]:
    scalar: set[str] = set()
    for name, field in model.model_fields.items():
        origin = getattr(field.annotation, "__origin__", None)
        if origin is list or field.annotation is list:
            continue
        scalar.add(name)
    return scalar


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(raw)
    for var, value in sorted(environ.items()):
        if not var.startswith("MEVSTACK_"):
            continue
        rest = var[len("MEVSTACK_") :].lower()
        section, _, key = rest.partition("_")
        model = _ENV_SECTIONS.get(section)
        if model is None or not key:
            continue  # e.g. MEVSTACK_KEY_PASSWORD: not a config override
        if key not in _scalar_fields(model):
            raise ConfigError(
                f"environment variable {var}: [{section}] has no scalar key {key!r} to override"
            )
        table = merged.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment variable {var}: [{section}] is not a table")
        merged[section] = {**table, key: value}
    return merged


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    where = _location(loc)
    # Name chains by their configured name, which is what a user searches the file for.
    if len(loc) >= 2 and loc[0] == "chains" and isinstance(loc[1], int):
        chains = raw.get("chains")
        if isinstance(chains, list) and loc[1] < len(chains) and isinstance(chains[loc[1]], dict):
            name = chains[loc[1]].get("name")
            if isinstance(name, str):
                where = f"{where} (chain {name!r})"
    kind = first["type"]
    message = str(first["msg"])
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {message}{suffix}" if where else f"{message}{suffix}"


def parse_settings(
    raw: dict[str, Any], *, source: str, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate an already-parsed TOML document (plus environment overrides)."""
    env = os.environ if environ is None else environ
    try:
        merged = _apply_env(raw, env)
    except ConfigError as exc:
        raise ConfigError(f"config error in {source}: {exc}") from None
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"config error in {source}: {_describe(exc, merged)}") from None
    try:
        settings.exploit_settings()
    except ConfigError as exc:
        raise ConfigError(f"config error in {source}: {exc}") from None
    return settings


def load_settings(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, parse and validate a config file; every problem is one ConfigError line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {file} not found (pass --config FILE, or run "
            "`mevstack devnet --out FILE` to write one for the local devnet)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error in {file}: invalid TOML: {exc}") from None
    return parse_settings(raw, source=str(file), environ=environ)
