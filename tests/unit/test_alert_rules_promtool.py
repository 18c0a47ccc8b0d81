"""Every stack's alert rules, loaded and unit-tested by Prometheus's own `promtool`, on synthetic series.

The rule file is the one the render ships (`alert_rules`, the ConfigMap's and the PrometheusRule's content).
For each rule a test case is generated from the rule itself: the series its selector reads (labels that
satisfy its matchers), values just above its threshold held past its `for` (the alert fires, with the labels
its aggregation keeps plus the rule's own), the threshold itself (nothing fires) and, for rules with a `for`,
the breach shorter than it (still pending, not firing). promtool evaluates the real rule file; nothing here
re-implements PromQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from components.observability import alert_rules
from headwater.config import load_platform, stack_names

STACKS = stack_names()
STEP_S = 60  # one sample per minute, and rules evaluated as often


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, (
        "promtool is missing: `make prometheus` installs Debian's prometheus package (which ships it)"
    )
    return found


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * units[match.group(2)]


def _example(matcher: Any) -> str:
    """A label value the matcher accepts (a regex's `.*` becomes a concrete suffix)."""
    if matcher.op == promql_parser.MatchOp.Equal:
        return str(matcher.value)
    assert matcher.op == promql_parser.MatchOp.Re, f"no example for matcher {matcher}"
    value = str(matcher.value).replace(".*", "run-1")
    assert re.fullmatch(str(matcher.value), value)
    return value


@dataclass(frozen=True)
class Case:
    """What one rule reads and when it must fire."""

    rule: dict[str, Any]
    series: str  # `name{labels}` in promtool's notation
    kept: dict[str, str]  # series labels the alert carries (those its aggregation keeps)
    threshold: float
    counter: bool  # the rule reads increase() of a counter over `window_s`
    window_s: int

    @classmethod
    def of(cls, rule: dict[str, Any]) -> Case:
        expr = promql_parser.parse(rule["expr"])
        assert isinstance(expr, promql_parser.BinaryExpr) and isinstance(
            expr.rhs, promql_parser.NumberLiteral
        )
        assert str(expr.op) == ">", f"{rule['alert']}: only `> N` thresholds are generated"
        lhs = expr.lhs
        by: list[str] | None = None
        if isinstance(lhs, promql_parser.AggregateExpr):
            by = list(lhs.modifier.labels) if lhs.modifier is not None else []
            lhs = lhs.expr
        counter, window_s = False, 0
        if isinstance(lhs, promql_parser.Call):
            assert lhs.func.name == "increase", f"{rule['alert']}: unexpected function {lhs.func.name}"
            matrix = lhs.args[0]
            counter, window_s = True, int(matrix.range.total_seconds())
            lhs = matrix.vector_selector
        assert isinstance(lhs, promql_parser.VectorSelector)
        labels = {m.name: _example(m) for m in lhs.matchers.matchers}
        labels.setdefault("instance", "test:9404")
        kept = {k: v for k, v in labels.items() if by is None or k in by}
        text = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return cls(rule, f"{lhs.name}{{{text}}}", kept, float(expr.rhs.val), counter, window_s)

    @property
    def for_s(self) -> int:
        return _seconds(self.rule["for"])

    def values(self, breach: bool, samples: int) -> str:
        if self.counter:
            # Over any window of `window_s`, a breach grows by more than the threshold; a calm counter not at all.
            per_step = (self.threshold + 1) * STEP_S / self.window_s + 1 if breach else 0
            return f"0+{per_step:.17g}x{samples}"
        level = self.threshold + 1 if breach else self.threshold
        return f"{level:.17g}x{samples}"  # every digit: thresholds in bytes are large

    def expected(self) -> dict[str, Any]:
        return {
            "exp_labels": {**self.kept, **self.rule["labels"]},
            "exp_annotations": dict(self.rule["annotations"]),
        }

    def tests(self) -> list[dict[str, Any]]:
        fire_at = max(self.for_s, self.window_s) + 2 * STEP_S
        samples = fire_at // STEP_S + 2
        name = self.rule["alert"]

        def case(breach: bool, eval_s: int, alerts: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "interval": f"{STEP_S}s",
                "input_series": [{"series": self.series, "values": self.values(breach, samples)}],
                "alert_rule_test": [{"eval_time": f"{eval_s}s", "alertname": name, "exp_alerts": alerts}],
            }

        out = [case(True, fire_at, [self.expected()]), case(False, fire_at, [])]
        if self.for_s > 2 * STEP_S:
            out.append(case(True, self.for_s - STEP_S, []))  # pending: breached, but not for long enough
        return out


def _rule_list(stack: str) -> list[dict[str, Any]]:
    return [r for g in alert_rules(load_platform(stack))["groups"] for r in g["rules"]]


def _write(folder: Path, stack: str, rules: dict[str, Any]) -> Path:
    rule_file = folder / f"{stack}.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = [t for g in rules["groups"] for r in g["rules"] for t in Case.of(r).tests()]
    test_file = folder / f"{stack}.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": [rule_file.name], "evaluation_interval": f"{STEP_S}s", "tests": tests},
            sort_keys=False,
        )
    )
    return test_file


@pytest.mark.parametrize("stack", STACKS)
def test_promtool_accepts_every_stacks_rules(stack: str, tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(alert_rules(load_platform(stack)), sort_keys=False))
    result = subprocess.run(
        [promtool(), "check", "rules", "--lint=all", "--lint-fatal", str(rule_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Lint errors too: two rules with one alert name and the same labels cannot be told apart once firing.
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rule_list(stack))} rules found" in result.stdout


@pytest.mark.parametrize("stack", STACKS)
def test_each_alert_fires_on_a_breach_and_stays_quiet_otherwise(stack: str, tmp_path: Path) -> None:
    rules = alert_rules(load_platform(stack))
    test_file = _write(tmp_path, stack, rules)
    cases = yaml.safe_load(test_file.read_text())["tests"]
    alerts = {r["alert"] for r in _rule_list(stack)}
    assert {"HeadwaterConsumerLag", "HeadwaterOfflinePartitions", "HeadwaterJobRestarting"} <= alerts
    assert len(cases) >= 2 * len(_rule_list(stack))
    result = subprocess.run(
        [promtool(), "test", "rules", test_file.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n[promtool] {stack}: {len(cases)} cases over {len(_rule_list(stack))} rules passed")


def test_a_rule_that_does_not_fire_as_specified_fails_its_test(tmp_path: Path) -> None:
    """The generated cases can fail: a lag budget ten times too large leaves its breach unreported."""
    rules = alert_rules(load_platform("prod"))
    test_file = _write(tmp_path, "prod", rules)  # cases from the real thresholds
    lag = next(g for g in rules["groups"] if g["name"] == "headwater-consumer-lag")["rules"][0]
    lag["expr"] = re.sub(r"> (\d+)$", lambda m: f"> {int(m.group(1)) * 10}", lag["expr"])
    (tmp_path / "prod.rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(
        [promtool(), "test", "rules", test_file.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "HeadwaterConsumerLag" in result.stdout + result.stderr
