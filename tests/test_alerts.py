"""Offline checks of the alerts and the workbook (infra/app/alerts.bicep, infra/app/workbook.bicep)
and of the queries in docs/operations.md.

An alert whose query names a metric the app does not emit never fires, and nothing says so: the
query runs, returns no row, and the rule stays green. So every query is held to what the app
emits, read from the Bicep's syntax tree (tree-sitter-bicep, the helpers of test_infra.py):

- every metric a query compares `name` with is in shared/telemetry/names.py's METRICS;
- every `customDimensions["..."]` key is an attribute in names.py;
- every function a query compares `operation_Name` with is a function folder of this repository;
- any other string that looks like a telemetry name (`twilio.errors`) is one of names.py's;
- every table is one of Application Insights' (the rules are scoped to the component, so its
  table and column names, never the Log Analytics workspace's AppRequests/TimeGenerated...).

The checker is tested too, on queries with one name misspelt, and on a copy of alerts.bicep with
one metric misspelt: each must fail. The rest holds the module's wiring: alerts only with an
e-mail address (azd's ALERT_EMAIL), every rule e-mailing through the action group, current API
versions, the stuck-broadcast window following its parameter, and the docs naming every alert.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import tree_sitter
from test_infra import (
    INFRA,
    REPO,
    bicep_tree,
    declarations,
    field,
    key_of,
    literal,
    text,
    value_of,
    walk,
)

ALERTS_BICEP = INFRA / "app" / "alerts.bicep"
WORKBOOK_BICEP = INFRA / "app" / "workbook.bicep"
MAIN_BICEP = INFRA / "main.bicep"
OPERATIONS_DOC = REPO / "docs" / "operations.md"


def load_names() -> ModuleType:
    """shared/telemetry/names.py by its path: the list of names, without the package's code."""
    path = REPO / "shared" / "telemetry" / "names.py"
    spec = importlib.util.spec_from_file_location("telemetry_names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = load_names()
METRICS = frozenset(NAMES.METRICS)
# names.py's other constants are attributes, except span names and the callback URL's parameter.
SPAN_NAMES = frozenset({getattr(NAMES, "BROADCAST_MESSAGE_SPAN", "broadcast.message")})
TWILIO_SPAN_PREFIX: str = getattr(NAMES, "TWILIO_SPAN_PREFIX", "Twilio ")
NOT_ATTRIBUTES = SPAN_NAMES | {TWILIO_SPAN_PREFIX, getattr(NAMES, "CALLBACK_TRACE_PARAM", "")}
ATTRIBUTES = frozenset(
    value
    for constant, value in vars(NAMES).items()
    if constant.isupper() and isinstance(value, str)
    and value not in METRICS and value not in NOT_ATTRIBUTES
)
FUNCTIONS = frozenset(path.parent.name for path in REPO.glob("*/function.json"))

# Application Insights' tables (what a rule scoped to the component, or the workbook, queries).
TABLES = frozenset(
    {"requests", "dependencies", "traces", "exceptions", "customMetrics", "customEvents"}
)
# The Log Analytics workspace's names for the same data: a query mixing them in would fail.
WORKSPACE_SCHEMA = frozenset(
    {
        "AppRequests", "AppDependencies", "AppTraces", "AppExceptions", "AppMetrics",
        "AppEvents", "TimeGenerated", "OperationName", "OperationId", "Properties", "ValueSum",
        "ValueCount", "ValueMax", "ResultCode", "Success", "Name",
    }
)
# The alert rules there must be (issue 25), each with the signal it must read.
EXPECTED_RULES = {
    "poison-queue": NAMES.POISONED,
    "function-failures": "requests",
    "twilio-errors": NAMES.TWILIO_ERRORS,
    "stuck-broadcast": NAMES.BROADCAST_SENDS,
    "storage-unavailable": NAMES.STORAGE_UNAVAILABLE,
}
# Current API versions, checked against Microsoft's ARM template reference and the REST API specs
# (azure-rest-api-specs: monitor stable/2023-12-01 scheduledQueryRule_API.json, stable/2023-01-01
# actionGroups_API.json, applicationinsights stable/2023-06-01 workbooks_API.json).
API_VERSIONS = {
    "Microsoft.Insights/scheduledQueryRules": "2023-12-01",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/workbooks": "2023-06-01",
}


# ---- Reading KQL ---------------------------------------------------------------------------------

# A KQL string ("..." or '...', optionally verbatim @"...") or a // comment, whichever starts first.
TOKEN = re.compile(r"""@?"(?:[^"\\\n]|\\.)*"|@?'(?:[^'\\\n]|\\.)*'|//[^\n]*""")
LITERAL = r"\x00(\d+)\x00"  # where the masked text had string number N
DIMENSION_KEY = re.compile(r"customDimensions\s*\[\s*" + LITERAL + r"\s*\]")
DIMENSION_DOT = re.compile(r"customDimensions\s*\.\s*([A-Za-z_]\w*)")
COMPARED = re.compile(
    r"\b(name|operation_Name)\s*"
    r"(?:==|!=|=~|!~|!?in~?|!?has(?:_cs)?|!?startswith(?:_cs)?|!?contains(?:_cs)?)\s*"
    r"(\([^()]*\)|" + LITERAL + ")"
)
TELEMETRY_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def mask(query: str) -> tuple[str, list[str]]:
    """The query with comments blanked and each string replaced by \\x00N\\x00, and the strings."""
    strings: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token.startswith("//"):
            return " " * len(token)
        strings.append(token.lstrip("@")[1:-1])
        return f"\x00{len(strings) - 1}\x00"

    return TOKEN.sub(replace, query), strings


def literals_in(masked: str) -> list[int]:
    return [int(n) for n in re.findall(LITERAL, masked)]


def split_top_level(expression: str, separator: str) -> list[str]:
    """expression split at each separator outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(expression[start:index])
            start = index + 1
    parts.append(expression[start:])
    return parts


def sources(expression: str) -> list[str]:
    """The tables (or let names) a tabular expression starts from, through union and brackets."""
    head = split_top_level(expression.strip(), "|")[0].strip()
    if head.startswith("(") and head.endswith(")"):
        return sources(head[1:-1])
    if re.match(r"union\b", head):
        arguments = re.sub(r"^union\s+(?:\w+\s*=\s*\w+\s+)*", "", head)
        return [table for argument in split_top_level(arguments, ",") for table in sources(argument)]
    match = IDENTIFIER.match(head)
    return [match.group()] if match and re.fullmatch(r"[A-Za-z_]\w*", head) else []


def is_metric_or_span(value: str) -> bool:
    """What `name` holds: a metric (customMetrics) or a span's name (dependencies)."""
    return value in METRICS | SPAN_NAMES or (
        value.startswith(TWILIO_SPAN_PREFIX) and len(value) > len(TWILIO_SPAN_PREFIX)
    )


def name_problems(query: str) -> list[str]:
    """Every name in the query that the app does not emit, or that is not Application Insights'.

    Empty when the query refers only to names.py's metrics and attributes, real function folders
    and Application Insights' tables."""
    masked, strings = mask(query)
    problems: list[str] = []
    if '"' in masked or "'" in masked:
        problems.append("an unterminated string")
    if masked.count("(") != masked.count(")") or masked.count("[") != masked.count("]"):
        problems.append("unbalanced brackets")
    checked: set[int] = set()
    for match in DIMENSION_KEY.finditer(masked):
        index = int(match.group(1))
        checked.add(index)
        if strings[index] not in ATTRIBUTES:
            problems.append(f'customDimensions["{strings[index]}"]: not an attribute in names.py')
    for match in DIMENSION_DOT.finditer(masked):
        problems.append(
            f"customDimensions.{match.group(1)}: name attributes as customDimensions[\"...\"] "
            "(names.py's contain dots)"
        )
    for match in COMPARED.finditer(masked):
        for index in literals_in(match.group(2)):
            checked.add(index)
            value = strings[index]
            if match.group(1) == "operation_Name" and value not in FUNCTIONS:
                problems.append(f'operation_Name compared with "{value}": not a function folder')
            elif match.group(1) == "name" and not is_metric_or_span(value):
                problems.append(
                    f'name compared with "{value}": not a metric in names.METRICS or a span '
                    "name (compare function names with operation_Name)"
                )
    for index, value in enumerate(strings):
        named = TELEMETRY_NAME.fullmatch(value) and value not in METRICS | ATTRIBUTES
        if index not in checked and named:
            problems.append(f'"{value}" looks like a telemetry name and is not in names.py')
    statements = split_top_level(masked, ";")
    lets = {m.group(1) for m in re.finditer(r"\blet\s+([A-Za-z_]\w*)\s*=", masked)}
    for statement in statements:
        body = re.sub(r"^\s*let\s+[A-Za-z_]\w*\s*=", "", statement)
        for table in sources(body):
            if table not in TABLES | lets:
                problems.append(f"{table}: not an Application Insights table")
    for identifier in set(IDENTIFIER.findall(masked)) & WORKSPACE_SCHEMA:
        problems.append(f"{identifier}: the workspace's schema, not Application Insights'")
    return problems


# ---- The queries in the Bicep and the docs -------------------------------------------------------


@dataclass(frozen=True)
class Query:
    where: str
    text: str


def string_value(path: Path, node: tree_sitter.Node) -> str | None:
    """A string literal, or a variable of this file holding one; None for anything else."""
    if node.type == "string":
        return literal(node)
    if node.type == "identifier":
        variables = declarations(path, "variable")
        if text(node) in variables:
            return string_value(path, variables[text(node)].named_children[-1])
    return None


def queries_in(path: Path) -> list[Query]:
    """Every `query:` property of the file whose value is a string or a string variable; loop
    items (`rule.query`) are skipped, their array elements' `query:` being read instead."""
    found = []
    for node in walk(bicep_tree(path).root_node):
        if node.type != "object_property" or key_of(node) != "query":
            continue
        value = value_of(node)
        if value.type == "member_expression":
            continue
        query = string_value(path, value)
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        where = f"{shown}:{node.start_point[0] + 1} ({text(value)[:40]})"
        assert query is not None, f"{where}: a query must be a plain string, no interpolation"
        found.append(Query(where, query))
    return found


def rules(path: Path = ALERTS_BICEP) -> dict[str, tree_sitter.Node]:
    """The elements of alerts.bicep's `rules` array, by key."""
    array = declarations(path, "variable")["rules"].named_children[-1]
    assert array.type == "array", text(array)[:80]
    return {
        literal(field(element, "key")) or "": element
        for element in array.named_children
        if element.type == "object"
    }


def doc_queries() -> list[Query]:
    found = []
    source = OPERATIONS_DOC.read_text()
    for match in re.finditer(r"```kusto\n(.*?)```", source, re.S):
        line = source.count("\n", 0, match.start()) + 1
        found.append(Query(f"docs/operations.md:{line}", match.group(1)))
    return found


def all_queries() -> list[Query]:
    return [*queries_in(ALERTS_BICEP), *queries_in(WORKBOOK_BICEP), *doc_queries()]


def metrics_named(query: str) -> set[str]:
    masked, strings = mask(query)
    return {
        strings[index]
        for match in COMPARED.finditer(masked)
        if match.group(1) == "name"
        for index in literals_in(match.group(2))
    }


def test_names_py_lists_metrics_and_attributes() -> None:
    assert len(METRICS) == len(NAMES.METRICS) >= 10
    assert {NAMES.CALL_SID, NAMES.MESSAGE_SID, NAMES.BROADCAST_ID, NAMES.CREATED_TRACE} <= ATTRIBUTES
    assert {"broadcast_send", "broadcast_poison", "make_call"} <= FUNCTIONS


def test_there_are_queries_to_check() -> None:
    where = {q.where.split(":")[0] for q in all_queries()}
    assert where == {"infra/app/alerts.bicep", "infra/app/workbook.bicep", "docs/operations.md"}
    assert len(queries_in(ALERTS_BICEP)) == len(EXPECTED_RULES)


@pytest.mark.parametrize("query", all_queries(), ids=lambda q: q.where)
def test_query_names_only_what_the_app_emits(query: Query) -> None:
    """Acceptance: each rule's and the workbook's query refers only to names that exist."""
    problems = name_problems(query.text)
    assert not problems, f"{query.where}:\n" + "\n".join(problems)


# One name misspelt in otherwise good queries: the checker must refuse each.
GOOD = (
    'customMetrics | where name == "twilio.errors"'
    ' | summarize n = sum(valueSum) by code = tostring(customDimensions["twilio.error_code"])'
)
MISSPELT = {
    "metric": GOOD.replace("twilio.errors", "twilio.error"),
    "metric in a list": 'customMetrics | where name in ("broadcast.sends", "broadcast.defferals")',
    "attribute": GOOD.replace("twilio.error_code", "twilio.errorcode"),
    "attribute by dot": "customMetrics | extend s = customDimensions.broadcast_id",
    "metric as attribute": GOOD.replace('["twilio.error_code"]', '["twilio.errors"]'),
    "function": 'requests | where operation_Name == "broadcast_poisson"',
    "function as metric": 'requests | where name == "broadcast_poison"',
    "span name as attribute": 'dependencies | where customDimensions["broadcast.message"] != ""',
    "stray name": 'customMetrics | extend s = strcat("broadcast.queue_ages", name)',
    "table": 'union requests, AppRequests | where operation_Name == "make_call"',
    "workspace column": 'requests | where TimeGenerated > ago(1h)',
    "unknown table": 'customMetric | where name == "twilio.errors"',
    "unterminated": 'requests | where operation_Name == "make_call',
}


def test_the_checker_accepts_good_names() -> None:
    assert name_problems(GOOD) == []
    assert name_problems('requests | where operation_Name in ("make_call", "send_sms")') == []
    assert name_problems(
        'let s = "x";\nlet hits = union (requests | where operation_Name == "make_call"),'
        ' dependencies;\nhits | where customDimensions["twilio.call_sid"] == s // "no.such"'
    ) == []


@pytest.mark.parametrize("case", sorted(MISSPELT))
def test_the_checker_refuses_a_misspelt_name(case: str) -> None:
    assert name_problems(MISSPELT[case]), f"{case}: {MISSPELT[case]!r} passed"


def test_a_misspelt_metric_in_alerts_bicep_fails(tmp_path: Path) -> None:
    """The real rules, with one metric misspelt: the check that guards them must fail."""
    copy = tmp_path / "alerts.bicep"
    source = ALERTS_BICEP.read_text()
    assert f'"{NAMES.STORAGE_UNAVAILABLE}"' in source
    copy.write_text(source.replace(f'"{NAMES.STORAGE_UNAVAILABLE}"', '"storage.unavailabel"'))
    problems = [p for q in queries_in(copy) for p in name_problems(q.text)]
    assert problems == ['name compared with "storage.unavailabel": not a metric in '
                        "names.METRICS or a span name (compare function names with "
                        "operation_Name)"]


# ---- The alert rules -----------------------------------------------------------------------------


def resource_declarations(path: Path) -> dict[str, tree_sitter.Node]:
    """Top-level resource declarations by type (without the API version)."""
    found = {}
    for node in bicep_tree(path).root_node.named_children:
        if node.type == "resource_declaration":
            type_ = literal(node.named_children[1]) or ""
            found[type_.split("@")[0]] = node
    return found


def body_of(declaration: tree_sitter.Node) -> tree_sitter.Node:
    """A resource's object, inside any `if` or `for`."""
    body = declaration.named_children[-1]
    while body.type != "object":
        body = body.named_children[-1]
    return body


def test_resources_use_current_api_versions() -> None:
    declared = {
        **resource_declarations(ALERTS_BICEP),
        **resource_declarations(WORKBOOK_BICEP),
    }
    for type_, version in API_VERSIONS.items():
        assert type_ in declared, f"no {type_}"
        assert literal(declared[type_].named_children[1]) == f"{type_}@{version}"


def test_there_is_one_rule_for_each_alert_the_issue_asks_for() -> None:
    found = rules()
    assert set(found) == set(EXPECTED_RULES)
    for key, signal in EXPECTED_RULES.items():
        query = string_value(ALERTS_BICEP, field(found[key], "query") or found[key])
        assert query is not None and signal in query, f"{key} must read {signal}"


def test_each_dimension_is_a_column_the_query_returns() -> None:
    for key, rule in rules().items():
        query = string_value(ALERTS_BICEP, field(rule, "query")) or ""
        dimensions = field(rule, "dimensions")
        assert dimensions is not None and dimensions.type == "array"
        for dimension in dimensions.named_children:
            assert literal(field(dimension, "operator")) == "Include"
            name = literal(field(dimension, "name")) or ""
            assert re.search(rf"\b{name}\s*=", query), f"{key}: the query returns no {name}"


def test_every_rule_is_a_log_alert_on_the_component_that_emails_the_action_group() -> None:
    declared = resource_declarations(ALERTS_BICEP)
    rule_declaration = declared["Microsoft.Insights/scheduledQueryRules"]
    loop = rule_declaration.named_children[-1]
    assert loop.type == "for_statement" and text(loop.named_children[1]) == "rules", text(loop)[:60]
    body = body_of(rule_declaration)
    assert literal(field(body, "kind")) == "LogAlert"
    props = field(body, "properties")
    assert text(field(props, "scopes") or body).split() == ["[", "applicationInsightsId", "]"]
    assert text(field(props, "windowSize") or body) == "rule.windowSize"
    groups = field(props, "actions", "actionGroups")
    assert groups is not None and text(groups).split() == ["[", "actionGroup.id", "]"]
    [condition] = field(props, "criteria", "allOf").named_children  # type: ignore[union-attr]
    assert text(field(condition, "query") or body) == "rule.query"
    assert literal(field(condition, "timeAggregation")) == "Count"
    assert literal(field(condition, "operator")) == "GreaterThan"
    assert text(field(condition, "threshold") or body) == "0"
    assert text(field(condition, "dimensions") or body) == "rule.dimensions"


def test_the_action_group_emails_the_address_parameter() -> None:
    body = body_of(resource_declarations(ALERTS_BICEP)["Microsoft.Insights/actionGroups"])
    assert literal(field(body, "location")) == "global"
    props = field(body, "properties")
    short_name = literal(field(props, "groupShortName")) or ""
    assert 1 <= len(short_name) <= 12, "groupShortName: 12 characters at most"
    receivers = field(props, "emailReceivers")
    assert receivers is not None
    [receiver] = receivers.named_children
    assert text(field(receiver, "emailAddress") or receiver) == "alertEmail"


def test_stuck_broadcast_window_follows_its_parameter() -> None:
    rule = rules()["stuck-broadcast"]
    assert text(field(rule, "windowSize") or rule) == "'PT${stuckBroadcastMinutes}M'"
    params = declarations(ALERTS_BICEP, "parameter")
    assert "stuckBroadcastMinutes" in params


def module_call(path: str) -> tree_sitter.Node:
    [call] = [
        n for n in bicep_tree(MAIN_BICEP).root_node.named_children
        if n.type == "module_declaration" and path in text(n.named_children[1])
    ]
    return call


def test_alerts_are_deployed_only_with_an_email_address_from_azd() -> None:
    """No address, no rules: a rule that tells no one still costs money every month."""
    call = module_call("app/alerts.bicep")
    condition = call.named_children[-1]
    assert condition.type == "if_statement", "the alerts module must be conditional"
    assert text(condition.named_children[0]) == "(!empty(alertEmail))"
    params = field(body_of(call), "params")
    assert text(field(params, "alertEmail") or call) == "alertEmail"
    assert text(field(params, "stuckBroadcastMinutes") or call) == "alertStuckBroadcastMinutes"
    assert text(field(params, "applicationInsightsId") or call) == "monitoring.outputs.id"
    main_params = declarations(MAIN_BICEP, "parameter")
    assert [text(c) for c in main_params["alertEmail"].children[2:]] == ["string", "=", "''"]
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert values["alertEmail"] == {"value": "${ALERT_EMAIL}"}
    assert values["alertStuckBroadcastMinutes"] == {"value": "${ALERT_STUCK_BROADCAST_MINUTES}"}


# ---- The workbook --------------------------------------------------------------------------------


def test_the_workbook_is_always_deployed_on_the_component() -> None:
    call = module_call("app/workbook.bicep")
    assert call.named_children[-1].type == "object", "the workbook needs no condition"
    params = field(call.named_children[-1], "params")
    assert text(field(params, "applicationInsightsId") or call) == "monitoring.outputs.id"
    body = body_of(resource_declarations(WORKBOOK_BICEP)["Microsoft.Insights/workbooks"])
    assert literal(field(body, "kind")) == "shared"
    assert text(field(body, "name") or body).startswith("guid(")  # a workbook's name is a GUID
    props = field(body, "properties")
    assert text(field(props, "sourceId") or body) == "applicationInsightsId"
    assert literal(field(props, "version")) == "Notebook/1.0"
    assert text(field(props, "serializedData") or body) == "string(workbookContent)"


def test_the_workbook_shows_every_metric_the_app_emits() -> None:
    shown = {name for q in queries_in(WORKBOOK_BICEP) for name in metrics_named(q.text)}
    assert shown == METRICS, f"not in the workbook: {sorted(METRICS - shown)}"


def test_every_workbook_chart_follows_the_time_range() -> None:
    source = WORKBOOK_BICEP.read_text()
    assert "name: 'TimeRange'" in source
    items = [
        n for n in walk(bicep_tree(WORKBOOK_BICEP).root_node)
        if n.type == "object" and literal(field(n, "version")) == "KqlItem/1.0"
    ]
    assert items
    for item in items:
        assert literal(field(item, "timeContextFromParameter")) == "TimeRange", text(item)[:80]


# ---- The docs ------------------------------------------------------------------------------------


def test_operations_doc_explains_every_alert_and_its_parameter() -> None:
    doc = OPERATIONS_DOC.read_text()
    for key, rule in rules().items():
        title = literal(field(rule, "displayName")) or key
        assert re.search(rf"^#+ .*{re.escape(title)}", doc, re.M), f"no section for {title}"
    for needed in ("ALERT_EMAIL", "ALERT_STUCK_BROADCAST_MINUTES", NAMES.CALL_SID,
                   NAMES.MESSAGE_SID, NAMES.BROADCAST_ID, NAMES.CREATED_TRACE,
                   "GET /api/broadcasts/{id}"):
        assert needed in doc, f"docs/operations.md must mention {needed}"


def test_operations_doc_is_linked_from_readme_and_deploy_doc() -> None:
    assert "(docs/operations.md)" in (REPO / "README.md").read_text()
    assert "(operations.md)" in (REPO / "docs" / "deploy.md").read_text()
