"""The config file: every documented key loads, every bad case is one line naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mevstack.config import Settings, load_settings
from mevstack.errors import ConfigError

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
FACTORY = "0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"

FULL = f"""
[engine]
mode = "paper"
auto_execute = true
state_dir = ".state"

[database]
url = "postgresql://postgres@127.0.0.1:5432/test"

[bus]
url = "redis://127.0.0.1:6379/0"

[server]
host = "127.0.0.1"
engine_port = 8082
gateway_port = 8093
ws_port = 8094
dashboard_port = 5002
backends = ["http://127.0.0.1:8082", "http://127.0.0.1:8091"]
cors_origins = ["http://127.0.0.1:5002"]
public_read = false

[[auth.tokens]]
name = "ops"
scopes = ["read", "trade", "admin"]
sha256 = "{"ab" * 32}"

[execution]
keystore = ".state/key.json"
password_env = "MY_PASSWORD"

[[chains]]
name = "ethereum"
chain_id = 1
rpc = ["http://127.0.0.1:8545", "https://user:secret@node.example/v1"]
ws = ["ws://127.0.0.1:8545"]
block_time = 12.0
base_tokens = ["{WETH}", "{USDC.lower()}"]
wrapped_native = "{WETH}"
route = "bundle"
relays = ["https://relay.example"]
strategies = ["arbitrage"]
max_hops = 3
confirmations = 2
min_net_profit_wei = "1000000000000000"
max_trade_wei = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
daily_loss_limit_wei = "0"

[[chains.dexes]]
name = "uniswap-v2"
kind = "uniswap_v2"
factory = "{FACTORY}"
fee_bps = 30
init_code_hash = "0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"

[[chains.dexes]]
name = "uniswap-v3"
kind = "uniswap_v3"
factory = "0x1F98431c8aD98523631AE4a59f267346ea31F984"

[[chains]]
name = "arbitrum"
chain_id = 42161
rpc = ["http://127.0.0.1:8546"]
wrapped_native = "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mevstack.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), environ=environ or {})


def test_full_documented_config_loads(tmp_path: Path) -> None:
    settings = load(tmp_path, FULL)
    eth = settings.chain("ethereum")
    assert settings.engine.mode == "paper" and settings.engine.auto_execute is True
    assert settings.server.public_read is False
    assert eth.base_tokens == [
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    ]
    assert eth.max_trade_wei == 2**256 - 1
    assert eth.min_net_profit_wei == 10**15
    assert eth.dexes[0].factory == "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
    assert eth.dexes[0].fee_bps == 30 and eth.dexes[1].fee_bps is None
    assert eth.active_strategies == ["arbitrage"]
    # Defaults: backrun only where a public mempool exists.
    arb = settings.chain("arbitrum")
    assert arb.active_strategies == ["arbitrage"] and arb.route == "public"


def test_defaults_without_any_section(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.engine.mode == "observe"
    assert settings.database.url == "sqlite:///.mevstack/mevstack.db"
    assert settings.bus.url == "memory://"
    assert settings.server.gateway_port == 8093 and settings.server.ws_port == 8094
    assert settings.chains == []


CHAIN = f"""
[[chains]]
name = "ethereum"
chain_id = 1
rpc = ["http://127.0.0.1:8545"]
wrapped_native = "{WETH}"
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[engine]\nmood = 'live'\n", "engine.mood: unknown key"),
        ("[wallet]\nx = 1\n", "wallet: unknown key"),
        (CHAIN + "colour = 'red'\n", "chains[0].colour (chain 'ethereum'): unknown key"),
        (
            CHAIN.replace(WETH, "0x1234"),
            "chains[0].wrapped_native (chain 'ethereum'): not a 20-byte hex address",
        ),
        (
            CHAIN.replace("http://127.0.0.1:8545", "ftp://127.0.0.1"),
            "chains[0].rpc[0] (chain 'ethereum'): not a http/https URL",
        ),
        (
            CHAIN.replace('rpc = ["http://127.0.0.1:8545"]', "rpc = []"),
            "chains[0] (chain 'ethereum'): rpc: a chain needs at least one RPC endpoint",
        ),
        (
            CHAIN.replace('rpc = ["http://127.0.0.1:8545"]\n', ""),
            "chains[0].rpc (chain 'ethereum'): required key is missing",
        ),
        (CHAIN + CHAIN, "chains: duplicate chain name 'ethereum'"),
        (
            CHAIN + f'[[chains.dexes]]\nname = "v2"\nkind = "uniswap_v2"\nfactory = "{FACTORY}"\n',
            "chains[0].dexes[0] (chain 'ethereum'): fee_bps: required for a uniswap_v2 dex",
        ),
        (
            CHAIN + 'route = "bundle"\n',
            "relays: route = 'bundle' needs at least one relay URL",
        ),
        (
            CHAIN + "min_net_profit_wei = 0.5\n",
            "chains[0].min_net_profit_wei (chain 'ethereum'): expected a decimal string of wei",
        ),
        ("[engine]\nmode = 'yolo'\n", "engine.mode: Input should be 'observe', 'paper' or 'live'"),
        ("[database]\nurl = 'mysql://x/y'\n", "database: url: expected sqlite:///"),
        ("[bus]\nurl = 'kafka://x'\n", "bus: url: expected memory:// or redis://"),
        ("[engine\nmode=1", "invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_environment_overrides_scalar_keys(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        FULL,
        environ={
            "MEVSTACK_ENGINE_MODE": "live",
            "MEVSTACK_SERVER_GATEWAY_PORT": "9093",
            "MEVSTACK_SERVER_PUBLIC_READ": "true",
            "MEVSTACK_DATABASE_URL": "sqlite:///x.db",
            "MEVSTACK_KEY_PASSWORD": "not an override: no such section",
        },
    )
    assert settings.engine.mode == "live"
    assert settings.server.gateway_port == 9093
    assert settings.server.public_read is True
    assert settings.database.url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"MEVSTACK_ENGINE_COLOUR": "red"}, "MEVSTACK_ENGINE_COLOUR: [engine] has no scalar key"),
        ({"MEVSTACK_SERVER_BACKENDS": "x"}, "[server] has no scalar key 'backends'"),
        ({"MEVSTACK_SERVER_WS_PORT": "http"}, "server.ws_port: Input should be a valid integer"),
        ({"MEVSTACK_ENGINE_MODE": "yolo"}, "engine.mode"),
    ],
)
def test_bad_environment_override(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, FULL, environ=environ)
    assert expected in str(info.value)


def test_cli_reports_config_error_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, CHAIN + "colour = 'red'\n")
    result = subprocess.run(
        [sys.executable, "-m", "mevstack.cli", "scan", "--once", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in lines[0] and "colour" in lines[0]


def test_exploit_and_notify_tables_are_validated(tmp_path: Path) -> None:
    good = (
        CHAIN
        + """
[exploits]
block_ttl_seconds = 600
min_drop_bps = 50

[[notify.webhooks]]
url = "http://127.0.0.1:9/hook"
format = "slack"
"""
    )
    settings = load(tmp_path, good)
    exploit = settings.exploit_settings()
    assert exploit.block_ttl_seconds == 600
    assert exploit.thresholds["ethereum"].min_drop_bps == 50
    assert [w.format for w in exploit.webhooks] == ["slack"]
    with pytest.raises(ConfigError, match=r"exploits: unknown key 'colour'"):
        load(tmp_path, CHAIN + "[exploits]\ncolour = 1\n")
    with pytest.raises(ConfigError, match=r"exploits.chains: no chain named 'solana'"):
        load(tmp_path, CHAIN + "[exploits.chains.solana]\nmin_drop_bps = 1\n")


def test_server_rate_limits_and_trusted_proxies(tmp_path: Path) -> None:
    defaults = load(tmp_path, "").server
    assert (defaults.rate_limit_per_token, defaults.rate_limit_per_address) == (200, 100)
    assert defaults.rate_limit_window_s == 1.0 and defaults.trusted_proxies == []
    text = (
        "[server]\nrate_limit_per_token = 7\nrate_limit_window_s = 2.5\n"
        'trusted_proxies = ["10.0.0.1", "192.168.0.0/16", "::1"]\n'
    )
    server = load(tmp_path, text, environ={"MEVSTACK_SERVER_RATE_LIMIT_PER_ADDRESS": "9"}).server
    assert (server.rate_limit_per_token, server.rate_limit_per_address) == (7, 9)
    assert server.rate_limit_window_s == 2.5
    assert server.trusted_proxies == ["10.0.0.1", "192.168.0.0/16", "::1"]
    overridden = load(tmp_path, text, environ={"MEVSTACK_SERVER_RATE_LIMIT_PER_TOKEN": "11"})
    assert overridden.server.rate_limit_per_token == 11


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("rate_limit_per_token = 0", {}, "server.rate_limit_per_token: Input should be greater"),
        ("rate_limit_per_address = -3", {}, "server.rate_limit_per_address: Input should be"),
        ("rate_limit_window_s = 0", {}, "server.rate_limit_window_s: Input should be greater"),
        ("", {"MEVSTACK_SERVER_RATE_LIMIT_PER_TOKEN": "lots"}, "server.rate_limit_per_token"),
        ('trusted_proxies = ["10.0.0.300"]', {}, "server.trusted_proxies[0]: '10.0.0.300' is not"),
        ('trusted_proxies = ["1.2.3.4", "x/8"]', {}, "server.trusted_proxies[1]: 'x/8' is not an"),
    ],
)
def test_bad_server_limits_are_one_line_errors_naming_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[server]\n{text}\n", environ=environ)
    assert expected in str(info.value) and "\n" not in str(info.value)
