"""``mevstack executor deploy`` against the devnet chain, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from mevstack.cli import main
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc

PASSWORD_ENV = "EXECUTOR_TEST_KEY_PASSWORD"
KEY = keccak(text="mevstack cli operator")
OWNER = "0x" + keccak(text="mevstack cold owner").hex()[-40:]


def _config(tmp_path: Path, node: Anvil, d: ChainDeployment, chain_id: int = 1) -> Path:
    keystore = tmp_path / "key.json"
    # pbkdf2 with few rounds: a test keystore need not resist brute force, only decrypt fast.
    keystore.write_text(json.dumps(Account.encrypt(KEY, "s3cret", kdf="pbkdf2", iterations=16)))
    config = tmp_path / "mevstack.toml"
    config.write_text(
        f"""
[execution]
keystore = "{keystore}"
password_env = "{PASSWORD_ENV}"

[[chains]]
name = "dev"
chain_id = {chain_id}
rpc = ["{node.rpc_url}"]
wrapped_native = "{d.weth}"
"""
    )
    return config


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_deploy_prints_the_address_last(
    chain_snapshot: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, d = chain_snapshot
    operator = Account.from_key(KEY).address
    with DevnetRpc(node.rpc_url) as rpc:
        rpc.call("anvil_setBalance", [operator, hex(10**20)])
        config = _config(tmp_path, node, d)
        monkeypatch.setenv(PASSWORD_ENV, "s3cret")

        code, out, err = _run(
            capsys,
            "executor",
            "deploy",
            "--chain",
            "dev",
            "--owner",
            OWNER,
            "--config",
            str(config),
        )
        assert code == 0, err
        assert err == []
        address = out[-1]
        assert rpc.call("eth_getCode", [address, "latest"]) not in ("0x", None)
        assert rpc.view(address, "operator()", ["address"]) == operator
        assert rpc.view(address, "owner()", ["address"]).lower() == OWNER
        assert rpc.view(address, "wrapped_native()", ["address"]) == d.weth

        code, out, err = _run(
            capsys, "executor", "deploy", "--chain", "dev", "--config", str(config)
        )
        assert code == 0
        assert len(err) == 1 and "warning" in err[0] and "owner" in err[0]
        assert rpc.view(out[-1], "owner()", ["address"]) == operator
        assert out[-1] != address


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no keystore", "not found"),
        ("wrong password", "wrong password"),
        ("no password variable", f"{PASSWORD_ENV} is not set"),
        ("wrong chain id", "the node answers chain id 1, the config says 5"),
        ("unknown chain", "no chain named 'nope'"),
        ("bad owner", "is not an address"),
    ],
)
def test_deploy_errors_are_one_line(
    devnet_chain: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    expected: str,
) -> None:
    node, d = devnet_chain
    config = _config(tmp_path, node, d, chain_id=5 if case == "wrong chain id" else 1)
    monkeypatch.setenv(PASSWORD_ENV, "wrong" if case == "wrong password" else "s3cret")
    if case == "no password variable":
        monkeypatch.delenv(PASSWORD_ENV)
    if case == "no keystore":
        (tmp_path / "key.json").unlink()
    chain = "nope" if case == "unknown chain" else "dev"
    argv = ["executor", "deploy", "--chain", chain, "--config", str(config)]
    if case == "bad owner":
        argv += ["--owner", "0x1234"]
    code, out, err = _run(capsys, *argv)
    assert code != 0
    assert len(err) == 1 and err[0].startswith("mevstack: ")
    assert expected in err[0]
    assert out == []
