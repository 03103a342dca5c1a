"""``mevstack key new|import|address``: the private key never shows up anywhere but the keystore."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from mevstack.cli import main
from mevstack.config import load_settings
from mevstack.execution.keys import load_operator_account

PASSWORD = "correct horse battery staple"


def write_config(tmp_path: Path, keystore: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "mevstack.toml"
    config.write_text(
        f'[execution]\nkeystore = "{keystore}"\npassword_env = "XP_TEST_KEY_PASSWORD"\n',
        encoding="utf-8",
    )
    return config


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_address_and_load_without_leaking_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = Account.create()
    key_hex = bytes(key.key).hex()
    keystore = tmp_path / "state" / "key.json"
    config = write_config(tmp_path, keystore)
    monkeypatch.setenv("XP_TEST_KEY_PASSWORD", PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO("0x" + key_hex + "\n"))
    outputs: list[str] = []

    code, out, err = run(["key", "import", "--config", str(config)], capsys)
    outputs += [out, err]
    assert code == 0 and out.strip() == key.address
    assert stat.S_IMODE(os.stat(keystore).st_mode) == 0o600
    # a second import never overwrites the keystore
    monkeypatch.setattr("sys.stdin", io.StringIO(key_hex + "\n"))
    code, out, err = run(["key", "import", "--config", str(config)], capsys)
    outputs += [out, err]
    assert code != 0 and "already exists" in err and len(err.strip().splitlines()) == 1

    code, out, err = run(["key", "address", "--config", str(config)], capsys)
    outputs += [out, err]
    assert code == 0 and out.strip() == key.address
    assert load_operator_account(load_settings(config)).address == key.address

    # mistakes are one line that never echoes what was typed
    bad_inputs = [key_hex[:-2] + "zz", key_hex + "00", "0" * 64]
    for index, bad in enumerate(bad_inputs):
        other = write_config(tmp_path / f"bad{index}", tmp_path / f"bad{index}" / "k.json")
        monkeypatch.setattr("sys.stdin", io.StringIO(bad + "\n"))
        code, out, err = run(["key", "import", "--config", str(other)], capsys)
        outputs += [out, err]
        assert code != 0 and err.startswith("mevstack: private key:") and bad not in err
    monkeypatch.setenv("XP_TEST_KEY_PASSWORD", "wrong password")
    with pytest.raises(Exception, match="wrong password") as info:
        load_operator_account(load_settings(config))
    outputs.append(str(info.value))

    everything = "\n".join([*outputs, caplog.text, keystore.read_text(encoding="utf-8")]).lower()
    assert key_hex.lower() not in everything
    assert key_hex.lower()[:16] not in everything
    assert json.loads(keystore.read_text(encoding="utf-8"))["crypto"]["ciphertext"]


def test_new_key_needs_a_password_and_creates_a_loadable_keystore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keystore = tmp_path / "key.json"
    config = write_config(tmp_path, keystore)
    monkeypatch.delenv("XP_TEST_KEY_PASSWORD", raising=False)
    code, out, err = run(["key", "new", "--config", str(config)], capsys)
    assert code != 0 and "XP_TEST_KEY_PASSWORD is not set" in err and not keystore.exists()
    monkeypatch.setenv("XP_TEST_KEY_PASSWORD", "short")
    code, out, err = run(["key", "new", "--config", str(config)], capsys)
    assert code != 0 and "too short" in err
    monkeypatch.setenv("XP_TEST_KEY_PASSWORD", PASSWORD)
    code, out, err = run(["key", "new", "--config", str(config)], capsys)
    assert code == 0
    account = load_operator_account(load_settings(config))
    assert out.strip() == account.address
    assert bytes(account.key).hex() not in out + err + keystore.read_text(encoding="utf-8")
    code, out, err = run(
        ["key", "address", "--config", str(write_config(tmp_path / "x", tmp_path / "none.json"))],
        capsys,
    )
    assert code != 0 and "not found" in err
