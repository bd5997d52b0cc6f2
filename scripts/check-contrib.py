#!/usr/bin/env python3
"""Checks contrib/: the Prometheus alert rules parse as YAML with the shape
Prometheus loads (groups of rules, each an alert with an expr, labels and
annotations), the Grafana dashboard parses as JSON with a query per panel,
and every floyd metric either names is one floyd exposes (the names
registered in src/runtime/exposition.rs; counters with `_total`,
histograms with `_bucket`, `_sum`, `_count`). promtool is not needed."""

import json
import re
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
source = (root / "src/runtime/exposition.rs").read_text()
# Names registered, and how: host series by `r.register("name", …, counter(…)|counter_of(…)|gauge(…)|Snapshot::of(…))`,
# group series by `per_group::<Counter|Gauge>(r, "name", …)` and the counters table.
exposed = set()
# A family built beforehand: `let sent = Family::<PeerLabel, Counter>::default();`.
families = dict(re.findall(r"let (\w+) = Family::<\w+, (\w+)>", source))
for name, kind in re.findall(r'r\.register\(\s*"(floyd_\w+)",\s*"[^"]*",\s*(\w+)', source):
    kind = families.get(kind, kind).lower().replace("snapshot", "Snapshot").removesuffix("_of")
    # (`SecondsCounter` and the like are counters too.)
    kind = "counter" if kind.endswith("counter") else kind
    exposed |= {
        "counter": {name + "_total"},
        "gauge": {name},
        "Snapshot": {name + "_bucket", name + "_sum", name + "_count"},
    }[kind]
for kind, name in re.findall(r'per_group::<(\w+)>\(\s*r,\s*"(floyd_\w+)"', source):
    exposed.add(name + "_total" if kind == "Counter" else name)
for name in re.findall(r'\(\s*"(floyd_\w+)",\s*"[^"]*",\s*\|m\|', source):
    exposed.add(name + "_total")
if len(exposed) < 20:
    sys.exit(f"check-contrib: found only {len(exposed)} metric names in exposition.rs: {sorted(exposed)}")

problems = []


def check_expr(where, expr):
    for name in re.findall(r"\bfloyd_\w+", expr):
        if name not in exposed:
            problems.append(f"{where}: {name} is not a metric floyd exposes")


rules = yaml.safe_load((root / "contrib/prometheus/alerts.yml").read_text())
count = 0
for group in rules["groups"]:
    assert group["name"] and group["rules"], "a group needs a name and rules"
    for rule in group["rules"]:
        count += 1
        for key in ("alert", "expr", "labels", "annotations"):
            if key not in rule:
                problems.append(f"alerts.yml: {rule.get('alert', '?')} has no {key}")
        if "severity" not in rule.get("labels", {}):
            problems.append(f"alerts.yml: {rule.get('alert')} has no severity")
        if "for" in rule and not re.fullmatch(r"\d+[smhd]", str(rule["for"])):
            problems.append(f"alerts.yml: {rule['alert']}: bad duration {rule['for']!r}")
        check_expr(f"alerts.yml {rule.get('alert')}", rule.get("expr", ""))

dashboard = json.loads((root / "contrib/grafana/floyd.json").read_text())
for panel in dashboard["panels"]:
    if not panel.get("targets"):
        problems.append(f"floyd.json: panel {panel.get('title')} has no query")
    for t in panel.get("targets", []):
        check_expr(f"floyd.json {panel.get('title')}", t["expr"])

if problems:
    sys.exit("check-contrib:\n  " + "\n  ".join(problems))
print(f"check-contrib: {count} alert rules and {len(dashboard['panels'])} dashboard panels name only exposed metrics ({len(exposed)} known)")
