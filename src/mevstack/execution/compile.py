"""Compiling the executor contract from its Vyper source, cached on disk by source hash.

Bytecode is never committed: it is rebuilt from ``contracts/executor.vy`` with the installed
vyper.  Loading the compiler costs about a second and compiling a few more, so the output is kept
as JSON under a cache directory keyed by the SHA-256 of the source and the compiler version; a
changed source or compiler simply misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mevstack.errors import MevstackError

SOURCE_PATH = Path(__file__).resolve().parent / "contracts" / "executor.vy"


class CompileError(MevstackError):
    """The executor source could not be compiled."""


@dataclass(frozen=True, slots=True)
class CompiledContract:
    abi: list[dict[str, Any]]
    bytecode: bytes  # creation code, without constructor arguments
    runtime: bytes
    source_hash: str


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"mevstack-vyper-{os.getuid()}"


def _source_key(source: str) -> str:
    version = metadata.version("vyper")
    return hashlib.sha256(f"vyper {version}\n{source}".encode()).hexdigest()


def _from_json(raw: dict[str, Any], key: str) -> CompiledContract:
    return CompiledContract(
        abi=list(raw["abi"]),
        bytecode=bytes.fromhex(raw["bytecode"]),
        runtime=bytes.fromhex(raw["runtime"]),
        source_hash=key,
    )


def compile_executor(cache_dir: Path | None = None) -> CompiledContract:
    """The executor's ABI and bytecode: from the cache when the source is unchanged."""
    try:
        source = SOURCE_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise CompileError(f"executor source {SOURCE_PATH} cannot be read: {exc}") from None
    key = _source_key(source)
    directory = cache_dir or default_cache_dir()
    cached = directory / f"executor-{key[:32]}.json"
    try:
        return _from_json(json.loads(cached.read_text(encoding="utf-8")), key)
    except (OSError, ValueError, KeyError):
        pass  # a missing or damaged cache entry is rebuilt below
    import vyper  # lazily: importing the compiler alone takes about a second

    try:
        out = vyper.compile_code(source, output_formats=["abi", "bytecode", "bytecode_runtime"])
    except Exception as exc:  # the compiler raises many unrelated types; one line is enough
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"vyper failed to compile {SOURCE_PATH.name}: {first}") from None
    raw = {
        "abi": out["abi"],
        "bytecode": out["bytecode"].removeprefix("0x"),
        "runtime": out["bytecode_runtime"].removeprefix("0x"),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Write then rename so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(raw, fh)
        os.replace(tmp, cached)
    except OSError:
        pass  # an unwritable cache only costs a recompile next time
    return _from_json(raw, key)
