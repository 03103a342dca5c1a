"""The shipped Prometheus alerting rules: valid, unit-tested alert by alert, and written against
metrics mevstack really exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

import mevstack.engine.engine  # noqa: F401  (declares every engine metric)
from mevstack.obs import metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
PROMTOOL = "/usr/bin/promtool"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = _promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - firing == set(), "alerts without a test in which they fire"


def test_the_rules_only_use_metrics_mevstack_exports() -> None:
    body, _ = metrics.render()
    families = {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")}
    # counters are exposed as <family>_total
    exposed = families | {f"{name}_total" for name in families}
    used = {
        name for rule in _rules() for name in re.findall(r"\bmevstack_[a-z0-9_]+", rule["expr"])
    }
    assert used, "no metric found in the rules"
    assert used - exposed == set(), "the rules name metrics mevstack does not export"
