"""Offline checks of the deployment files: infra/*.bicep, main.parameters.json, azure.yaml.

The Bicep compiler cannot be installed here, so what can be checked is checked for real:
- syntax, with tree-sitter-bicep (no ERROR or MISSING node in any file);
- checkov (pinned, in its own venv; frameworks bicep and secrets), with every failing check
  either essential (never waived) or waived below with the reason next to it;
- the properties this app relies on, read from the syntax tree: transport hardening, Flex
  Consumption, identity-only storage, secrets only as Key Vault references;
- consistency with the rest of the repository: settings the code reads, the azd service name,
  the Python version, the function routes, .funcignore.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_bicep
import yaml

from devhost.pytest_plugin import require_shared
from shared.app_settings import ALL_SETTINGS

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV_REQUIREMENTS = INFRA / "requirements-checkov.txt"
FUNCTIONS = ("make_call", "voice_url", "sms_url")

SECRET_SETTINGS = (
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "TWILIO_API_SECRET",
    "TWILIO_SHARED_KEY_SECRET",
    "TWILIO_SHARED_KEY_SECRET_SECONDARY",
)
KEY_VAULT_REFERENCE = re.compile(r"@Microsoft\.KeyVault\(SecretUri=\$\{[^{}]+\}\)")
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# Host settings in local.settings.json that Azure provides differently: the worker runtime is
# functionAppConfig.runtime on Flex Consumption, storage is an identity-based connection.
HOST_SETTINGS = ("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage")


# ---- Bicep syntax trees ----------------------------------------------------------------------

BICEP = tree_sitter.Language(tree_sitter_bicep.language())


@functools.cache
def bicep_tree(path: Path) -> tree_sitter.Tree:
    return tree_sitter.Parser(BICEP).parse(path.read_bytes())


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def line_of(node: tree_sitter.Node) -> int:
    return node.start_point[0] + 1


def key_of(prop: tree_sitter.Node) -> str:
    """An object property's key: an identifier or a plain string ('azd-service-name')."""
    key = prop.named_children[0]
    return literal(key) or text(key) if key.type == "string" else text(key)


def value_of(prop: tree_sitter.Node) -> tree_sitter.Node:
    return prop.named_children[-1]


def literal(node: tree_sitter.Node | None) -> str | None:
    """The value of a string without interpolation; None for anything else."""
    if node is None or node.type != "string":
        return None
    if any(child.type == "interpolation" for child in node.named_children):
        return None
    return "".join(text(c) for c in node.named_children if c.type == "string_content")


def field(obj: tree_sitter.Node | None, *path: str) -> tree_sitter.Node | None:
    """obj.a.b... through nested object literals; None where the path stops."""
    for name in path:
        if obj is None or obj.type != "object":
            return None
        obj = next(
            (
                value_of(p)
                for p in obj.named_children
                if p.type == "object_property" and key_of(p) == name
            ),
            None,
        )
    return obj


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    body: tree_sitter.Node


def resources(type_prefix: str) -> list[Resource]:
    """Resource declarations (nested and conditional ones too) whose type starts so."""
    found = []
    for path in BICEP_FILES:
        for node in walk(bicep_tree(path).root_node):
            if node.type != "resource_declaration":
                continue
            symbol, type_node = node.named_children[0], node.named_children[1]
            body = node.named_children[-1]
            if body.type == "if_statement":
                body = body.named_children[-1]
            type_ = literal(type_node) or ""
            if type_.split("@")[0] == type_prefix or type_.startswith(type_prefix + "@"):
                found.append(Resource(path, text(symbol), type_.split("@")[0], body))
            elif not type_.startswith("Microsoft.") and type_prefix.endswith("/" + type_):
                # a nested child such as `resource settings 'config'` inside a site
                found.append(Resource(path, text(symbol), type_prefix, body))
    return found


def the_resource(type_: str) -> Resource:
    found = resources(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.symbol for r in found]}"
    return found[0]


def properties_named(name: str) -> list[tuple[Path, tree_sitter.Node]]:
    """Every object property with this key, in every Bicep file."""
    return [
        (path, node)
        for path in BICEP_FILES
        for node in walk(bicep_tree(path).root_node)
        if node.type == "object_property" and key_of(node) == name
    ]


def declarations(path: Path, kind: str) -> dict[str, tree_sitter.Node]:
    """Top-level declarations of one kind (parameter, output, ...) by name."""
    root = bicep_tree(path).root_node
    return {
        text(n.named_children[0]): n for n in root.named_children if n.type == f"{kind}_declaration"
    }


def secure_parameters(path: Path) -> set[str]:
    """Names of @secure() parameters: their decorators are the node just before them."""
    names, previous = set(), None
    for node in bicep_tree(path).root_node.named_children:
        if (
            node.type == "parameter_declaration"
            and previous is not None
            and previous.type == "decorators"
            and "@secure()" in text(previous)
        ):
            names.add(text(node.named_children[0]))
        previous = node
    return names


def has_default(param: tree_sitter.Node) -> bool:
    return any(c.type == "=" for c in param.children)


def test_there_is_bicep_to_check() -> None:
    assert INFRA / "main.bicep" in BICEP_FILES


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_parses_without_error_or_missing_nodes(path: Path) -> None:
    problems = [
        f"{path.name}:{line_of(n)}:{n.start_point[1] + 1}: "
        f"{'missing ' + n.type if n.is_missing else 'cannot parse ' + text(n)[:60]!r}"
        for n in walk(bicep_tree(path).root_node)
        if n.type == "ERROR" or n.is_missing
    ]
    assert not problems, "\n".join(problems)


# ---- What the app relies on, read from the syntax tree ---------------------------------------


def test_function_app_is_https_only_tls12_no_ftp_http2() -> None:
    """FC1 has no FTP(S) and rejects siteConfig.ftpsState (see FLEX_CONSUMPTION_UNSUPPORTED):
    what stays off instead is publishing with user name and password, over FTP and the SCM site."""
    site = the_resource("Microsoft.Web/sites")
    props = field(site.body, "properties")
    assert text(field(props, "httpsOnly") or site.body) == "true", "httpsOnly must be true"
    assert literal(field(props, "siteConfig", "minTlsVersion")) in ("1.2", "1.3")
    assert text(field(props, "siteConfig", "http20Enabled") or site.body) == "true"
    policies = {
        literal(field(policy.body, "name")): policy
        for policy in resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert set(policies) == {"ftp", "scm"}, f"expected ftp and scm policies, found {set(policies)}"
    for name, policy in policies.items():
        assert text(field(policy.body, "parent") or policy.body) == site.symbol, name
        assert text(field(policy.body, "properties", "allow") or policy.body) == "false", name


# Microsoft's table "Flex Consumption plan deprecations": site properties and app settings not to
# be used on a Flex Consumption (FC1) app, written as the page writes them (checked against the
# page dated 2025-12-22). ARM rejects some outright (siteConfig.ftpsState: BadRequest) and ignores
# or overwrites others; none belongs in infra/.
FLEX_CONSUMPTION_DEPRECATIONS_URL = (
    "https://learn.microsoft.com/azure/azure-functions/functions-app-settings"
    "#flex-consumption-plan-deprecations"
)
FLEX_CONSUMPTION_CONSIDERATIONS_URL = (
    "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations"
)
FLEX_CONSUMPTION_UNSUPPORTED = (
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
    "properties.alwaysOn",
    "properties.containerSize",
    "properties.dnsConfiguration",
    "properties.ftpsState",
    "properties.isReserved",
    "properties.IsXenon",
    "properties.javaVersion",
    "properties.LinuxFxVersion",
    "properties.netFrameworkVersion",
    "properties.powerShellVersion",
    "properties.siteConfig.functionAppScaleLimit",
    "properties.siteConfig.preWarmedInstanceCount",
    "properties.use32BitWorkerProcess",
    "properties.vnetBackupRestoreEnabled",
    "properties.vnetContentShareEnabled",
    "properties.vnetImagePullEnabled",
    "properties.vnetRouteAllEnabled",
    "properties.windowsFxVersion",
    # Not in that table; unsupported on FC1 per FLEX_CONSUMPTION_CONSIDERATIONS_URL.
    "WEBSITE_TIME_ZONE",
    "TZ",
    "WEBSITE_LOAD_CERTIFICATES",
)


def names_used(node: tree_sitter.Node) -> Iterator[tuple[str, tree_sitter.Node]]:
    """Object keys under node, and `name:` values (siteConfig.appSettings is a name/value list)."""
    for prop in walk(node):
        if prop.type == "object_property":
            yield key_of(prop), prop
            if key_of(prop) == "name" and (value := literal(value_of(prop))):
                yield value, prop


def test_flex_consumption_site_uses_nothing_the_plan_deprecates() -> None:
    """Acceptance: siteConfig.ftpsState, or any other FLEX_CONSUMPTION_UNSUPPORTED entry, on the
    FC1 site, in its config resources or among its app settings fails.

    The page writes siteConfig properties as properties.X, so a property entry matches its last
    name anywhere in the site (properties or siteConfig). App settings arrive from main.bicep too,
    so a setting entry matches in every Bicep file. ARM names are case-insensitive."""
    plan = the_resource("Microsoft.Web/serverfarms")
    assert literal(field(plan.body, "sku", "name")) == "FC1"
    site = the_resource("Microsoft.Web/sites")
    entries = {entry.rsplit(".", 1)[-1].lower(): entry for entry in FLEX_CONSUMPTION_UNSUPPORTED}
    # isReserved is the SDKs' name of the site property that ARM calls `reserved`.
    entries["reserved"] = "properties.isReserved"
    settings = {name: entry for name, entry in entries.items() if "." not in entry}
    scopes = [(r.file, r.body, entries) for r in (site, *resources("Microsoft.Web/sites/config"))]
    scopes += [(path, bicep_tree(path).root_node, settings) for path in BICEP_FILES]
    found = {
        f"{path.relative_to(INFRA)}:{line_of(prop)}: {name} ({banned[name.lower()]})"
        for path, node, banned in scopes
        for name, prop in names_used(node)
        if name.lower() in banned
    }
    assert not found, (
        f"deprecated or unsupported on Flex Consumption ({FLEX_CONSUMPTION_DEPRECATIONS_URL}):\n"
        + "\n".join(sorted(found))
    )


def test_function_app_is_linux_python_on_flex_consumption() -> None:
    plan = the_resource("Microsoft.Web/serverfarms")
    assert literal(field(plan.body, "sku", "name")) == "FC1"
    assert literal(field(plan.body, "sku", "tier")) == "FlexConsumption"
    assert text(field(plan.body, "properties", "reserved") or plan.body) == "true"
    site = the_resource("Microsoft.Web/sites")
    assert literal(field(site.body, "kind")) == "functionapp,linux"
    runtime = field(site.body, "properties", "functionAppConfig", "runtime")
    assert literal(field(runtime, "name")) == "python"


def test_each_instance_takes_more_than_one_http_request_at_a_time() -> None:
    """Flex Consumption lets a Python app's instance take one HTTP request at a time unless the
    site says otherwise: a burst of status callbacks would each wait for an instance (and its
    cold start), up to maximumInstanceCount, then be turned away. The functions are async, so
    the site sets its own per-instance concurrency, within the plan's 1 to 1000."""
    site = the_resource("Microsoft.Web/sites")
    scale = field(site.body, "properties", "functionAppConfig", "scaleAndConcurrency")
    per_instance = field(scale, "triggers", "http", "perInstanceConcurrency")
    assert per_instance is not None, "scaleAndConcurrency.triggers.http.perInstanceConcurrency"
    param = declarations(FUNCTION_APP_BICEP, "parameter")[text(per_instance)]
    assert [text(c) for c in param.children[2:4]] == ["int", "="], text(param)
    default = int(text(param.children[4]))
    assert 1 < default <= 1000
    decorators = text(param.prev_named_sibling) if param.prev_named_sibling else ""
    assert "@minValue(1)" in decorators and "@maxValue(1000)" in decorators


def test_deployment_package_storage_is_reached_with_managed_identity() -> None:
    site = the_resource("Microsoft.Web/sites")
    storage = field(site.body, "properties", "functionAppConfig", "deployment", "storage")
    assert literal(field(storage, "type")) == "blobContainer"
    auth = literal(field(storage, "authentication", "type"))
    assert auth in ("UserAssignedIdentity", "SystemAssignedIdentity")
    account = the_resource("Microsoft.Storage/storageAccounts")
    props = field(account.body, "properties")
    assert text(field(props, "allowSharedKeyAccess") or account.body) == "false"
    assert text(field(props, "allowBlobPublicAccess") or account.body) == "false"
    assert literal(field(props, "minimumTlsVersion")) == "TLS1_2"
    assert [text(value_of(p)) for _, p in properties_named("AzureWebJobsStorage__credential")] == [
        "'managedidentity'"
    ]


def test_no_account_keys_or_connection_strings_with_keys() -> None:
    for path in BICEP_FILES:
        source = path.read_text()
        for forbidden in ("listKeys(", "AccountKey=", "SharedAccessKey"):
            assert forbidden not in source, f"{path.name} uses {forbidden}"


def test_application_insights_sends_to_log_analytics() -> None:
    component = the_resource("Microsoft.Insights/components")
    assert field(component.body, "properties", "WorkspaceResourceId") is not None
    the_resource("Microsoft.OperationalInsights/workspaces")


def test_key_vault_uses_rbac_and_the_app_is_secrets_user() -> None:
    vault = the_resource("Microsoft.KeyVault/vaults")
    props = field(vault.body, "properties")
    assert text(field(props, "enableRbacAuthorization") or vault.body) == "true"
    assert field(props, "accessPolicies") is None
    grants = [
        r
        for r in resources("Microsoft.Authorization/roleAssignments")
        if r.file == vault.file and KEY_VAULT_SECRETS_USER in r.file.read_text()
    ]
    assert grants, "the app identity needs Key Vault Secrets User on the vault"
    assert text(field(grants[0].body, "scope") or vault.body) == vault.symbol


def test_site_reads_key_vault_references_with_its_identity() -> None:
    site = the_resource("Microsoft.Web/sites")
    assert field(site.body, "properties", "keyVaultReferenceIdentity") is not None
    assert literal(field(site.body, "identity", "type")) == "UserAssigned"


def test_secret_settings_are_key_vault_references() -> None:
    """Acceptance: a plain-text TWILIO_AUTH_TOKEN (or other secret) in app settings fails."""
    seen = set()
    for name in SECRET_SETTINGS:
        for path, prop in properties_named(name):
            value = value_of(prop)
            seen.add(name)
            assert value.type == "string" and KEY_VAULT_REFERENCE.fullmatch(text(value)[1:-1]), (
                f"{path.name}:{line_of(prop)}: {name} must be "
                f"'@Microsoft.KeyVault(SecretUri=${{...}})', not {text(value)!r}"
            )
    assert "TWILIO_AUTH_TOKEN" in seen, "the app settings must set TWILIO_AUTH_TOKEN"


def secure_use_is_allowed(use: tree_sitter.Node, path: Path) -> bool:
    """A secure parameter may be tested for emptiness, stored as a Key Vault secret's value,
    or handed to a module parameter (whose own file is checked the same way)."""
    parent = use.parent
    if parent is None:
        return False
    if parent.type == "arguments":
        call = parent.parent
        return call is not None and text(call.named_children[0]) == "empty"
    if parent.type != "object_property" or value_of(parent) != use:
        return False
    holder = parent.parent.parent if parent.parent else None  # object -> its property/decl
    if key_of(parent) == "value" and holder is not None:
        resource = holder
        while resource is not None and resource.type != "resource_declaration":
            resource = resource.parent
        return resource is not None and "Microsoft.KeyVault/vaults/secrets" in text(
            resource.named_children[1]
        )
    return holder is not None and holder.type == "object_property" and key_of(holder) == "params"


def test_secure_parameters_flow_only_into_key_vault() -> None:
    problems = []
    for path in BICEP_FILES:
        names = secure_parameters(path)
        for node in walk(bicep_tree(path).root_node):
            if node.type != "identifier" or text(node) not in names:
                continue
            parent = node.parent
            if (
                parent is not None
                and parent.type in ("parameter_declaration", "object_property")
                and parent.named_children[0] == node  # the declared name or a property key
            ):
                continue
            if not secure_use_is_allowed(node, path):
                problems.append(f"{path.name}:{line_of(node)}: {text(node.parent or node)[:80]}")
    assert not problems, "secure parameters used outside Key Vault:\n" + "\n".join(problems)


def test_public_base_url_is_the_apps_own_https_url() -> None:
    [(_path, prop)] = properties_named("PUBLIC_BASE_URL")
    assert re.fullmatch(r"'https://\$\{\w+\.properties\.defaultHostName\}'", text(value_of(prop)))


def test_the_zoneinfo_path_is_the_one_the_benchmark_measures_and_pythons_default() -> None:
    """PYTHONTZPATH only spares the first call loading Python's build configuration: it names
    the folders Python's own default names (so zones are found where they were), and the
    benchmark's children get the same value (so BENCHMARKS.md measures the app as deployed)."""
    import sysconfig

    from bench.common import APP_SETTINGS

    [(_path, prop)] = properties_named("PYTHONTZPATH")
    assert literal(value_of(prop)) == APP_SETTINGS["PYTHONTZPATH"]
    assert APP_SETTINGS["PYTHONTZPATH"] == sysconfig.get_config_var("TZPATH")


def test_azd_service_name_tag_matches_azure_yaml() -> None:
    tags = [literal(value_of(p)) for _, p in properties_named("azd-service-name")]
    services = yaml.safe_load((REPO / "azure.yaml").read_text())["services"]
    assert tags == list(services), "the app's azd-service-name tag must name the azure.yaml service"
    [service] = services.values()
    assert {k: service[k] for k in ("project", "language", "host")} == {
        "project": ".", "language": "python", "host": "function"}


# ---- Settings the code reads -----------------------------------------------------------------


def example_settings() -> list[str]:
    example = json.loads((REPO / "local.settings.json.example").read_text())
    return list(example["Values"])


def settings_the_code_reads() -> list[str]:
    """shared.app_settings lists every setting the app reads, and the host needs two more."""
    return [*ALL_SETTINGS, *HOST_SETTINGS]


def test_local_settings_example_lists_every_setting_the_code_reads() -> None:
    assert sorted(example_settings()) == sorted(settings_the_code_reads())


def readme_settings_rows() -> dict[str, str]:
    """README rows '| `NAME` | ...', one entry per setting named in the first cell."""
    readme = REPO / "README.md"
    rows: dict[str, str] = {}
    if readme.exists():
        for line in readme.read_text().splitlines():
            cells = line.split("|")
            if len(cells) > 2 and line.lstrip().startswith("|"):
                for name in re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", cells[1]):
                    rows.setdefault(name, line)
    return rows


def bicep_app_setting_names() -> set[str]:
    return {
        key_of(n)
        for path in BICEP_FILES
        for n in walk(bicep_tree(path).root_node)
        if n.type == "object_property" and re.fullmatch(r"[A-Z][A-Z0-9_]+", key_of(n))
    }


def test_host_settings_have_their_azure_counterparts() -> None:
    assert set(HOST_SETTINGS) <= set(example_settings())
    site = the_resource("Microsoft.Web/sites")
    runtime = field(site.body, "properties", "functionAppConfig", "runtime")
    assert literal(field(runtime, "name")) == "python"  # FUNCTIONS_WORKER_RUNTIME
    assert properties_named("AzureWebJobsStorage__accountName")  # AzureWebJobsStorage


@pytest.mark.parametrize("name", [n for n in settings_the_code_reads() if n not in HOST_SETTINGS])
def test_each_setting_is_set_by_bicep_or_documented_optional(name: str) -> None:
    if name in bicep_app_setting_names():
        return
    row = readme_settings_rows().get(name)
    assert row is not None, f"{name} is neither set by infra/*.bicep nor in README's table"
    cells = [c.strip().lower() for c in row.split("|")]
    assert cells[2] in ("no", "optional"), f"{name} is required but infra/*.bicep does not set it"
    assert "default" in row.lower(), f"README must give {name}'s default"


# ---- Parameters and outputs ------------------------------------------------------------------


def test_main_parameters_file_feeds_every_required_parameter_from_azd() -> None:
    params = declarations(INFRA / "main.bicep", "parameter")
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    unknown = set(values) - set(params)
    assert not unknown, f"main.parameters.json sets parameters main.bicep lacks: {unknown}"
    missing = {name for name, node in params.items() if not has_default(node)} - set(values)
    assert not missing, f"azd would prompt (and CI fail) for {missing}"
    for name in secure_parameters(INFRA / "main.bicep"):
        value = values.get(name, {}).get("value")
        assert isinstance(value, str) and re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", value), (
            f"{name} must come from the azd environment (${{NAME}}), never a literal"
        )


def test_the_deploy_workflow_provisions_with_every_secret_parameter() -> None:
    """A secret that main.parameters.json reads from the azd environment and the deploy
    workflow's Provision step does not pass is provisioned empty: its Key Vault reference (a
    SharedKey secret, say) would be dropped from the app by the next push to main."""
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    needed = {values[name]["value"][2:-1] for name in secure_parameters(INFRA / "main.bicep")}
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "deploy.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job.get("steps", [])]
    [provision] = [s for s in steps if "azd provision" in str(s.get("run", ""))]
    env = provision.get("env", {})
    assert {name: env.get(name) for name in needed} == {
        name: "${{ secrets." + name + " }}" for name in needed
    }


# Parameters the deploy workflow leaves to azd: it names the resource group itself (rg-<env>).
LEFT_TO_AZD = frozenset({"AZURE_RESOURCE_GROUP"})


def test_the_deploy_workflow_provisions_with_every_other_parameter() -> None:
    """Every provision replaces the app's settings whole, from the parameters: one that
    main.parameters.json reads and the workflow never passes goes back to its default on the next
    push to main (a Messaging Service SID, a greeting set with `azd env set`). So each reaches
    the Provision step as a repository variable; unset, it is empty, which the app reads as
    unset (shared.common.settings.Reader.get), so its default still applies."""
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    secret = {values[name]["value"][2:-1] for name in secure_parameters(INFRA / "main.bicep")}
    wanted = {v["value"][2:-1] for v in values.values()} - secret - LEFT_TO_AZD
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "deploy.yml").read_text())
    [job] = workflow["jobs"].values()
    env = job.get("env", {})
    assert {name: env.get(name) for name in wanted} == {
        name: "${{ vars." + name + " }}" for name in wanted
    }


def route_prefix() -> str:
    host = json.loads((REPO / "host.json").read_text())
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def function_route(name: str) -> str:
    config = json.loads((REPO / name / "function.json").read_text())
    [trigger] = [b for b in config["bindings"] if b["type"] == "httpTrigger"]
    return trigger.get("route", name)


def test_outputs_name_the_app_its_base_url_and_function_urls() -> None:
    outputs = declarations(INFRA / "main.bicep", "output")
    for name in ("AZURE_FUNCTION_APP_NAME", "FUNCTION_APP_BASE_URL"):
        assert name in outputs
    for function, output in zip(FUNCTIONS, ("MAKE_CALL_URL", "VOICE_URL", "SMS_URL"), strict=True):
        value = outputs[output].named_children[-1]
        expected = f"/{route_prefix()}/{function_route(function)}"
        assert text(value).endswith(f"{expected}'"), f"{output} must end with {expected}"


def test_python_version_agrees_across_bicep_ci_and_readme() -> None:
    site = the_resource("Microsoft.Web/sites")
    runtime = field(site.body, "properties", "functionAppConfig", "runtime")
    version = literal(field(runtime, "version"))
    assert version and re.fullmatch(r"3\.\d+", version)
    ci_versions = {
        str(step.get("with", {}).get("python-version"))
        for path in sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
        for job in (yaml.safe_load(path.read_text()).get("jobs") or {}).values()
        for step in job.get("steps", [])
        if str(step.get("uses", "")).startswith("actions/setup-python@")
    }
    assert ci_versions == {version}, f"CI sets up Python {ci_versions}, the app runs {version}"
    readme = (REPO / "README.md").read_text() if (REPO / "README.md").exists() else ""
    mentioned = set(re.findall(r"Python (3\.\d+)", readme))
    assert mentioned == {version}, f"README names Python {mentioned}, the app runs {version}"


# ---- The console's sign-in: App Service Authentication, optional, off by default ----------------
# docs/console-sign-in.md says what the Flex Consumption documentation says about the feature and
# how this was checked: against the documentation and this file, since Azure cannot be reached
# from here.

FUNCTION_APP_BICEP = INFRA / "app" / "functionapp.bicep"
# Twilio calls these without signing in; it signs them instead (X-Twilio-Signature).
WEBHOOK_FUNCTIONS = (
    "voice_url",
    "sms_url",
    "call_flow",
    "call_status",
    "message_status",
    "recording_status",
    "client_voice",
)
# App Service Authentication's actions that refuse or redirect an unauthenticated request; the
# Entra configuration here must never use them (they would shut Twilio out of the webhooks).
REFUSING_ACTIONS = ("RedirectToLoginPage", "Return401", "Return403", "Return404")


def auth_settings() -> tuple[tree_sitter.Node, tree_sitter.Node]:
    """The one authsettingsV2 resource: its declaration and its body (inside any `if`)."""
    found = [
        r
        for r in resources("Microsoft.Web/sites/config")
        if literal(field(r.body, "name")) == "authsettingsV2"
    ]
    assert len(found) == 1, f"expected one authsettingsV2 resource, found {len(found)}"
    [resource] = found
    declaration = resource.body
    while declaration.type != "resource_declaration":
        assert declaration.parent is not None
        declaration = declaration.parent
    return declaration, resource.body


def http_functions() -> dict[str, dict[str, Any]]:
    """Each HTTP-triggered function folder's trigger binding, by folder name."""
    found = {}
    for config in sorted(REPO.glob("*/function.json")):
        bindings = json.loads(config.read_text()).get("bindings", [])
        for binding in bindings:
            if binding.get("type") == "httpTrigger":
                found[config.parent.name] = binding
    return found


def test_console_sign_in_is_an_azd_parameter_off_by_default() -> None:
    main = declarations(INFRA / "main.bicep", "parameter")
    module = declarations(FUNCTION_APP_BICEP, "parameter")
    for params in (main, module):
        switch = params["consoleSignIn"]
        assert [text(c) for c in switch.children[2:]] == ["bool", "=", "false"], text(switch)
        client_id = params["consoleSignInClientId"]
        assert [text(c) for c in client_id.children[2:]] == ["string", "=", "''"]
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    # As every other optional setting: an unset azd value leaves the Bicep default (false).
    assert values["consoleSignIn"] == {"value": "${CONSOLE_SIGN_IN}"}
    assert values["consoleSignInClientId"] == {"value": "${CONSOLE_SIGN_IN_CLIENT_ID}"}
    [module_call] = [
        n
        for n in bicep_tree(INFRA / "main.bicep").root_node.named_children
        if n.type == "module_declaration" and "app/functionapp.bicep" in text(n)
    ]
    params = field(module_call.named_children[-1], "params")
    assert text(field(params, "consoleSignIn") or module_call) == "consoleSignIn"
    assert text(field(params, "consoleSignInClientId") or module_call) == "consoleSignInClientId"


def test_authsettings_v2_is_deployed_only_with_console_sign_in() -> None:
    declaration, body = auth_settings()
    assert declaration.named_children[-1].type == "if_statement", (
        "authsettingsV2 must be deployed only when consoleSignIn is true"
    )
    condition = declaration.named_children[-1].named_children[0]
    assert text(condition) == "(consoleSignIn)", text(condition)
    assert literal(declaration.named_children[1]).startswith("Microsoft.Web/sites/config@")
    assert text(field(body, "parent") or body) == the_resource("Microsoft.Web/sites").symbol
    # The settings it relies on are the module's, on the same switch.
    [(_path, settings)] = properties_named("OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID")
    holder = settings.parent.parent  # object -> `var signInSettings = consoleSignIn ? {...} : {}`
    assert holder is not None and holder.type == "ternary_expression"
    assert text(holder.named_children[0]) == "consoleSignIn"
    assert text(holder.named_children[-1]) == "{}"


def test_authsettings_v2_lets_every_request_through() -> None:
    """Acceptance: Twilio's webhooks stay reachable without signing in. Authentication only names
    who signed in; it never redirects or refuses (globally: no action but AllowAnonymous, and
    authentication not required)."""
    _declaration, body = auth_settings()
    props = field(body, "properties")
    validation = field(props, "globalValidation")
    assert literal(field(validation, "unauthenticatedClientAction")) == "AllowAnonymous"
    assert text(field(validation, "requireAuthentication") or body) == "false"
    assert text(field(props, "platform", "enabled") or body) == "true"
    # A configuration file would take precedence over what is checked here.
    assert field(props, "platform", "configFilePath") is None
    for path in BICEP_FILES:
        for node in walk(bicep_tree(path).root_node):
            value = literal(node)
            assert value not in REFUSING_ACTIONS, (
                f"{path.name}:{line_of(node)}: {value} would shut Twilio out of the webhooks"
            )
            if node.type == "object_property":
                assert key_of(node) != "requireAuthentication" or text(value_of(node)) == "false"


def test_authsettings_v2_signs_in_with_this_tenants_entra_id_and_stores_no_tokens() -> None:
    _declaration, body = auth_settings()
    props = field(body, "properties")
    assert text(field(props, "httpSettings", "requireHttps") or body) == "true"
    entra = field(props, "identityProviders", "azureActiveDirectory")
    assert text(field(entra, "enabled") or body) == "true"
    registration = field(entra, "registration")
    assert text(field(registration, "clientId") or body) == "consoleSignInClientId"
    issuer = text(field(registration, "openIdIssuer") or body)
    assert issuer == "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    # No client secret: the app's managed identity signs in for the registration (preview).
    assert literal(field(registration, "clientSecretSettingName")) == (
        "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
    )
    [(_path, setting)] = properties_named("OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID")
    assert text(value_of(setting)) == "identityClientId"
    audiences = field(entra, "validation", "allowedAudiences")
    assert audiences is not None and [text(a) for a in audiences.named_children] == [
        "'api://${consoleSignInClientId}'",
        "consoleSignInClientId",
    ]
    assert text(field(props, "login", "tokenStore", "enabled") or body) == "false"


def test_no_webhook_is_left_behind_an_excluded_path_list() -> None:
    """Every request passes (AllowAnonymous), so no path list is needed; one would only matter
    with authentication required, which would refuse every webhook not in it. None is used, and
    the webhooks themselves ask for no function key either (Twilio cannot send one)."""
    for name in ("excludedPaths", "excludedPath"):
        found = properties_named(name)
        assert not found, (
            f"{name} in {[f'{p.name}:{line_of(n)}' for p, n in found]}: with AllowAnonymous no "
            f"path needs excluding; a list would have to name every webhook: {WEBHOOK_FUNCTIONS}"
        )
    functions = http_functions()
    for name in WEBHOOK_FUNCTIONS:
        assert functions[name].get("authLevel") == "anonymous", f"{name} must need no key"
        assert function_route(name).strip("/") == name, f"{name}'s route moved: check the docs"
    anonymous = {n for n, b in functions.items() if b.get("authLevel") == "anonymous"}
    # The console's page (HTML, CSS, script) is the only other anonymous function: it holds no data.
    assert anonymous - set(WEBHOOK_FUNCTIONS) <= {"console"}, (
        f"new anonymous functions {sorted(anonymous - set(WEBHOOK_FUNCTIONS) - {'console'})}: "
        "a webhook belongs in WEBHOOK_FUNCTIONS and docs/console-sign-in.md"
    )


def test_console_require_sign_in_follows_the_parameter() -> None:
    """CONSOLE_REQUIRE_SIGN_IN is 'true' exactly when authsettingsV2 is deployed, 'false' otherwise
    (always set, so turning sign-in off also turns the requirement off)."""
    [(path, prop)] = properties_named("CONSOLE_REQUIRE_SIGN_IN")
    assert path == INFRA / "main.bicep"
    value = value_of(prop)
    assert value.type == "ternary_expression", text(value)
    assert [text(c) for c in value.named_children] == ["consoleSignIn", "'true'", "'false'"]
    holder = prop.parent.parent  # object -> `var consoleSettings = {...}`
    assert holder is not None and holder.type == "variable_declaration"
    name = text(holder.named_children[0])
    [module_call] = [
        n
        for n in bicep_tree(INFRA / "main.bicep").root_node.named_children
        if n.type == "module_declaration" and "app/functionapp.bicep" in text(n)
    ]
    app_settings = field(module_call.named_children[-1], "params", "appSettings")
    assert app_settings is not None and re.search(rf"\b{name}\b", text(app_settings)), (
        f"{name} must reach the app settings"
    )


# ---- .funcignore, azure.yaml -----------------------------------------------------------------


def test_funcignore_keeps_tests_infra_and_dev_code_out_of_the_package() -> None:
    lines = {
        line.strip().rstrip("/")
        for line in (REPO / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for dev_only in ("tests", "infra", "devhost", "bench", "scripts", "docs", "azure.yaml"):
        assert dev_only in lines, f".funcignore must exclude {dev_only}"
    for deployed in (*FUNCTIONS, "shared", "host.json", "requirements.txt"):
        assert deployed not in lines, f".funcignore must not exclude {deployed}"


def test_postdeploy_hook_runs_the_webhook_script_on_every_os() -> None:
    hook = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]["postdeploy"]
    for os_name, shell in (("posix", "sh"), ("windows", "pwsh")):
        assert hook[os_name]["shell"] == shell
        assert "scripts/set_twilio_webhooks.py" in hook[os_name]["run"]
    assert (REPO / "scripts" / "set_twilio_webhooks.py").exists()


def azd_schema_registry(schema: dict[str, Any]) -> Any:
    """The azd extension schemas under the raw GitHub URLs azure.yaml.json refers to."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    ext_dir = require_shared(SHARED / "schemas" / "azd-ext")
    urls = {
        url.rsplit("/", 1)[-1]: url
        for url in re.findall(r'"\$ref":\s*"(https://[^"#]+)', json.dumps(schema))
    }
    pairs = []
    for path in sorted(ext_dir.glob("*.json")):
        contents = json.loads(path.read_text())
        url = urls.get(path.name) or contents.get("$id")
        pairs.append((url, Resource.from_contents(contents, default_specification=DRAFT7)))

    def no_network(uri: str) -> Resource:
        raise LookupError(f"{uri} is not preloaded and nothing is fetched at test time")

    registry = Registry(retrieve=no_network).with_resources(pairs)
    for url in urls.values():  # every reference resolves offline
        registry.resolver().lookup(url)
    return registry


def test_azure_yaml_matches_azd_schema() -> None:
    from jsonschema import validators

    schema = json.loads(require_shared(SHARED / "schemas" / "azure.yaml.json").read_text())
    validator_cls = validators.validator_for(schema)
    validator = validator_cls(
        schema, registry=azd_schema_registry(schema), format_checker=validator_cls.FORMAT_CHECKER
    )
    document = yaml.safe_load((REPO / "azure.yaml").read_text())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# ---- checkov ---------------------------------------------------------------------------------

# Never waived: these are the reasons the deployment is shaped as it is.
ESSENTIAL_CHECKS = {
    "CKV_AZURE_70": "Function App only over HTTPS",
    "CKV_AZURE_18": "HTTP/2 enabled",
    "CKV_AZURE_16": "the app has a managed identity",
    "CKV_AZURE_71": "managed identity provider enabled",
    "CKV_AZURE_72": "no remote debugging",
    "CKV_AZURE_3": "storage only over HTTPS",
    "CKV_AZURE_44": "storage requires TLS 1.2",
    "CKV_AZURE_34": "the deployment container is private",
    "CKV_AZURE_111": "Key Vault soft delete",
    "CKV_AZURE_131": "secure parameters have no hard-coded default",
}
# Resource types checkov has checks for; each must have been evaluated.
CHECKED_RESOURCE_TYPES = (
    "Microsoft.Web/sites",
    "Microsoft.Web/serverfarms",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.KeyVault/vaults",
    "Microsoft.KeyVault/vaults/secrets",
)
# TLS 1.2 on the app: checkov's function-app check and its web-app twin; both must pass.
TLS_CHECKS = ("CKV_AZURE_145", "CKV_AZURE_15")


@dataclass(frozen=True)
class Waiver:
    check: str
    resource: str  # checkov's resource id, or "*" for every resource
    reason: str


WAIVERS = (
    Waiver(
        "CKV_AZURE_13",
        "*",
        "Twilio cannot sign in with Entra ID: webhooks are checked by "
        "X-Twilio-Signature, make_call by its function key. The optional console sign-in "
        "(authsettingsV2, consoleSignIn) lets unauthenticated requests through on purpose, and "
        "checkov reads V1 authsettings' `enabled` and drops the properties of conditional "
        "resources anyway (test_authsettings_v2_lets_every_request_through checks it).",
    ),
    Waiver("CKV_AZURE_17", "*", "Twilio presents no client certificate to webhooks."),
    Waiver("CKV_AZURE_222", "*", "Twilio must reach voice_url and sms_url from the internet."),
    Waiver(
        "CKV_AZURE_212",
        "*",
        "Scale to zero is the point of Flex Consumption: it costs "
        "nothing at rest; a minimum instance count would bill every hour.",
    ),
    Waiver(
        "CKV_AZURE_78",
        "Microsoft.Web/sites.functionApp",
        "FTP(S) does not exist on Flex Consumption: its documentation lists siteConfig.ftpsState "
        "among the properties FC1 does not support and ARM answers BadRequest to it "
        "(test_flex_consumption_site_uses_nothing_the_plan_deprecates). The ftp and scm "
        "basicPublishingCredentialsPolicies stay off "
        "(test_function_app_is_https_only_tls12_no_ftp_http2).",
    ),
    Waiver(
        "CKV_AZURE_213",
        "*",
        "Health check needs always-on instances; Flex Consumption "
        "has none (Application Insights watches failures instead).",
    ),
    Waiver(
        "CKV_AZURE_225",
        "*",
        "Zone redundancy on FC1 requires always-ready instances, "
        "which cost money at rest; acceptable for a webhook app Twilio retries.",
    ),
    Waiver(
        "CKV_AZURE_63",
        "*",
        "App Service file-system HTTP logs do not exist on Flex "
        "Consumption; requests go to Application Insights. (checkov reads the appsettings "
        "config resource as a site config.)",
    ),
    Waiver(
        "CKV_AZURE_65",
        "*",
        "Same as CKV_AZURE_63: no App Service detailed-error pages on "
        "Flex Consumption; errors go to Application Insights.",
    ),
    Waiver(
        "CKV_AZURE_66",
        "*",
        "Same as CKV_AZURE_63: failed request tracing is an App Service "
        "(IIS) feature, absent on Linux Flex Consumption.",
    ),
    Waiver(
        "CKV_AZURE_80",
        "*",
        "A Python app: .NET Framework version does not apply (checkov "
        "reads the appsettings config resource as a site config).",
    ),
    Waiver(
        "CKV_AZURE_88",
        "*",
        "Flex Consumption has no Azure Files content share; the package "
        "is in blob storage reached with the managed identity.",
    ),
    Waiver(
        "CKV_AZURE_35",
        "*",
        "Without a VNet (which would add cost), the Flex Consumption "
        "host reaches its storage over the public endpoint; shared keys are off, so only "
        "Entra identities with a role get in.",
    ),
    Waiver("CKV_AZURE_59", "*", "Same as CKV_AZURE_35: public endpoint, identity-only access."),
    Waiver(
        "CKV_AZURE_206",
        "*",
        "The account holds only the deployment package and host "
        "bookkeeping, both recreated by `azd deploy`; LRS is the cheapest.",
    ),
    Waiver(
        "CKV_AZURE_109",
        "*",
        "Key Vault references resolve over the public endpoint unless "
        "the app has VNet integration (extra cost); access is RBAC-only.",
    ),
    Waiver("CKV_AZURE_189", "*", "Same as CKV_AZURE_109."),
    Waiver(
        "CKV_AZURE_110",
        "*",
        "Purge protection cannot be undone and would block `azd down "
        "--purge` followed by `azd up` with the same name for the retention period; soft "
        "delete stays on and the secrets come from the azd environment again.",
    ),
    Waiver(
        "CKV_AZURE_42",
        "*",
        "Recoverable means soft delete plus purge protection; see CKV_AZURE_110.",
    ),
    Waiver(
        "CKV_AZURE_41",
        "*",
        "Twilio auth tokens, API secrets and SharedKey secrets do not expire; an expiry "
        "date would silently break the Key Vault references on that day. Rotate with "
        "TWILIO_AUTH_TOKEN_SECONDARY (TWILIO_SHARED_KEY_SECRET_SECONDARY) instead.",
    ),
    Waiver(
        "CKV_AZURE_114",
        "Microsoft.KeyVault/vaults/secrets.authTokenSecondary",
        "checkov drops the properties of conditional (`if`) resources; contentType is set "
        "(test_conditional_secrets_set_a_content_type checks it).",
    ),
    Waiver(
        "CKV_AZURE_114",
        "Microsoft.KeyVault/vaults/secrets.apiSecret",
        "Same as for authTokenSecondary.",
    ),
    Waiver(
        "CKV_AZURE_114",
        "Microsoft.KeyVault/vaults/secrets.sharedKeySecret",
        "Same as for authTokenSecondary.",
    ),
    Waiver(
        "CKV_AZURE_114",
        "Microsoft.KeyVault/vaults/secrets.sharedKeySecretSecondary",
        "Same as for authTokenSecondary.",
    ),
)


def waiver_for(check: str, resource: str) -> Waiver | None:
    return next((w for w in WAIVERS if w.check == check and w.resource in ("*", resource)), None)


def checkov_bin() -> str:
    """scripts/test.sh exports CHECKOV_BIN (its own venv); a checkov on PATH also does."""
    found = os.environ.get("CHECKOV_BIN") or shutil.which("checkov")
    local = REPO / ".venv-checkov" / "bin" / "checkov"
    found = found or (str(local) if local.exists() else None)
    if not found:
        message = "checkov not installed: run scripts/test.sh (it makes .venv-checkov)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def stage_for_checkov(root: Path) -> str:
    """Copy the deployment files to scan, plus a canary secret made up at run time, so that a
    run in which the secrets framework silently did nothing cannot pass."""
    shutil.copytree(INFRA, root / "infra")
    docs = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "docs").glob("*.md"))]
    for name in ("azure.yaml", ".funcignore", "scripts/set_twilio_webhooks.py", *docs):
        if (REPO / name).exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    if (REPO / ".github" / "workflows").exists():
        shutil.copytree(REPO / ".github" / "workflows", root / ".github" / "workflows")
    alphabet = string.ascii_letters + string.digits
    canary = "sk_" + "live_" + "".join(secrets.choice(alphabet) for _ in range(24))
    (root / "canary").mkdir()
    (root / "canary" / "canary.yaml").write_text(f"stripe_key: {canary}\n")
    return "/canary/canary.yaml"


def json_documents(output: str) -> list[dict[str, Any]]:
    """checkov prints one JSON value per run: a report or a list of reports."""
    decoder, index, reports = json.JSONDecoder(), 0, []
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(output, index)
        reports.extend(value if isinstance(value, list) else [value])
    return reports


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run for the whole module (it takes seconds)."""
    root = tmp_path_factory.mktemp("checkov")
    canary = stage_for_checkov(root)
    command = [
        checkov_bin(),
        "--directory",
        str(root),
        "--framework",
        "bicep",
        "secrets",
        "--skip-download",
        "--output",
        "json",
    ]
    env = {**os.environ, "ANSI_COLORS_DISABLED": "1", "LOG_LEVEL": "WARNING"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stderr[-3000:]}"
    reports = {r["check_type"]: r for r in json_documents(result.stdout)}
    return {"reports": reports, "canary": canary}


def results(checkov: dict[str, Any], check_type: str, outcome: str) -> list[dict[str, Any]]:
    report = checkov["reports"].get(check_type, {"results": {}})
    return report["results"].get(f"{outcome}_checks", [])


def test_checkov_is_the_pinned_version(checkov: dict[str, Any]) -> None:
    pinned = re.search(r"^checkov==(\S+)", CHECKOV_REQUIREMENTS.read_text(), re.M)
    assert pinned, "infra/requirements-checkov.txt must pin checkov with =="
    versions = {r["summary"]["checkov_version"] for r in checkov["reports"].values()}
    assert versions == {pinned.group(1)}


def test_checkov_parsed_every_bicep_file(checkov: dict[str, Any]) -> None:
    """checkov exits 0 on files it cannot parse: read parsing_errors, and check coverage."""
    report = checkov["reports"].get("bicep")
    assert report is not None, "checkov produced no bicep report"
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    evaluated = {
        r["resource"].rsplit(".", 1)[0]
        for outcome in ("passed", "failed")
        for r in results(checkov, "bicep", outcome)
    }
    missing = set(CHECKED_RESOURCE_TYPES) - evaluated
    assert not missing, f"checkov evaluated no {sorted(missing)}: did it read every file?"


def test_checkov_secrets_framework_ran_and_found_only_the_canary(
    checkov: dict[str, Any],
) -> None:
    findings = {(r["file_path"], r["check_id"]) for r in results(checkov, "secrets", "failed")}
    assert any(path == checkov["canary"] for path, _ in findings), (
        "the secrets framework did not flag the canary: it did not run"
    )
    leaks = sorted(f for f in findings if f[0] != checkov["canary"])
    assert not leaks, f"secrets in the deployment files: {leaks}"


@pytest.mark.parametrize("check", sorted(ESSENTIAL_CHECKS))
def test_checkov_essential_check_ran_and_passed(check: str, checkov: dict[str, Any]) -> None:
    passed = [r for r in results(checkov, "bicep", "passed") if r["check_id"] == check]
    failed = [r for r in results(checkov, "bicep", "failed") if r["check_id"] == check]
    assert not failed, f"{check} ({ESSENTIAL_CHECKS[check]}) failed: " + ", ".join(
        f"{r['resource']} in {r['file_path']}" for r in failed
    )
    assert passed, f"{check} ({ESSENTIAL_CHECKS[check]}) did not run"


def test_checkov_tls_checks_ran_and_passed(checkov: dict[str, Any]) -> None:
    ran = {r["check_id"] for r in results(checkov, "bicep", "passed")} & set(TLS_CHECKS)
    failed = [
        r["check_id"] for r in results(checkov, "bicep", "failed") if r["check_id"] in TLS_CHECKS
    ]
    assert not failed, f"minimum TLS version checks failed: {failed}"
    assert ran, f"none of {TLS_CHECKS} ran"


def test_checkov_failures_are_all_waived_with_a_reason(checkov: dict[str, Any]) -> None:
    unwaived = [
        f"{r['check_id']} {r['resource']} ({r['file_path']}): {r['check_name']}"
        for r in results(checkov, "bicep", "failed")
        if r["check_id"] in ESSENTIAL_CHECKS
        or r["check_id"] in TLS_CHECKS
        or waiver_for(r["check_id"], r["resource"]) is None
    ]
    assert not unwaived, "checkov failures without a waiver:\n" + "\n".join(unwaived)


def test_every_waiver_is_still_needed(checkov: dict[str, Any]) -> None:
    """A waiver whose check now passes should go, so waivers never pile up unread."""
    failing = {(r["check_id"], r["resource"]) for r in results(checkov, "bicep", "failed")}
    stale = [
        w
        for w in WAIVERS
        if not any(c == w.check and w.resource in ("*", res) for c, res in failing)
    ]
    assert not stale, f"waivers for checks that pass now: {[(w.check, w.resource) for w in stale]}"
    assert all(len(w.reason) > 20 for w in WAIVERS)


def test_conditional_secrets_set_a_content_type() -> None:
    """What checkov cannot see in `if` resources (see the CKV_AZURE_114 waivers)."""
    for secret in resources("Microsoft.KeyVault/vaults/secrets"):
        assert literal(field(secret.body, "properties", "contentType")), secret.symbol


# Built-in role ids, as Microsoft lists them (Azure built-in roles: Storage).
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"


def test_the_app_identity_may_read_and_write_its_record_tables() -> None:
    """shared/records/storage.py signs in with the managed identity: without this role every record
    write is a 403 and every status callback a 503."""
    storage = INFRA / "app" / "storage.bicep"
    source = storage.read_text()
    assert STORAGE_TABLE_DATA_CONTRIBUTOR in source
    grants = [
        r for r in resources("Microsoft.Authorization/roleAssignments") if r.file == storage
    ]
    assert any("storageTableDataContributorRoleId" in text(r.body) for r in grants)
    for grant in grants:
        assert text(field(grant.body, "properties", "principalId")) == "appPrincipalId"


STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"


def test_the_app_identity_may_send_and_receive_broadcast_messages() -> None:
    """broadcasts puts messages on the queue with the managed identity, and the host's queue
    trigger for broadcast_send reads, hides and deletes them (and writes the poison queue)."""
    storage = INFRA / "app" / "storage.bicep"
    assert STORAGE_QUEUE_DATA_CONTRIBUTOR in storage.read_text()
    grants = [
        r for r in resources("Microsoft.Authorization/roleAssignments") if r.file == storage
    ]
    assert any("storageQueueDataContributorRoleId" in text(r.body) for r in grants)


def test_prepackage_hook_stamps_the_call_flow_and_compiles_the_bytecode_on_every_os() -> None:
    """The package carries the flow's check stamp (shared/common/stamp.py), made with the
    settings azd gives the app, and the app's hash-checked bytecode; a flow the check refuses
    stops the deploy; without a flow, the bytecode only."""
    hook = yaml.safe_load((REPO / "azure.yaml").read_text())["services"]["api"]["hooks"]
    for os_name, shell in (("posix", "sh"), ("windows", "pwsh")):
        assert hook["prepackage"][os_name]["shell"] == shell
        assert "scripts/prepackage.py" in hook["prepackage"][os_name]["run"]
    script = hook["prepackage"]["posix"]["run"]
    folder = Path(tempfile.mkdtemp(prefix=".test-hook-", dir=REPO))
    try:
        good = folder / "calls.json"
        good.write_text((REPO / "flows" / "calls.example.json").read_text())
        bad = folder / "bad.json"
        bad.write_text(good.read_text().replace("+14155550101", "+19005550100"))
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
               "TWILIO_PHONE_NUMBER": "+14155550160"}

        def run(flow: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["sh", "-c", script], cwd=REPO, env={**env, "CALL_FLOW": flow},
                                  capture_output=True, text=True, timeout=120, check=False)

        assert run("").returncode == 0
        pyc = REPO / "shared" / "callflows" / "__pycache__" / "walk.cpython-311.pyc"
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # PEP 552: checked hash
        assert run(str(good.relative_to(REPO))).returncode == 0
        assert (folder / "calls.json.checked").is_file()
        refused = run(str(bad.relative_to(REPO)))
        assert refused.returncode == 1 and "premium-rate" in refused.stderr
        assert not (folder / "bad.json.checked").exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_prepackage_python_is_the_function_apps() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import prepackage
    finally:
        sys.path.remove(str(REPO / "scripts"))
    bicep = (REPO / "infra" / "app" / "functionapp.bicep").read_text()
    assert re.search(r"name: 'python'\s+version: '(\d+\.\d+)'", bicep)[1] == ".".join(
        map(str, prepackage.FUNCTION_APP_PYTHON))


# A new instance of the read-only package, whose files' times are not the build's: which of the
# app's modules does it compile (rather than load from the package's bytecode)?
COMPILED_AT_IMPORT = """
import importlib._bootstrap_external as external, json, sys
compiled = []
original = external.SourceLoader.source_to_code
def spy(self, data, path, *args, **kwargs):
    compiled.append(path)
    return original(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = spy
sys.path.insert(0, sys.argv[1])
import voice_url, make_call, shared.callflows.walk, shared.outbound.numbers
print(json.dumps([p for p in compiled if p.startswith(sys.argv[1])]))
"""


def test_the_packaged_bytecode_is_used_whatever_the_files_times(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import prepackage
    finally:
        sys.path.remove(str(REPO / "scripts"))
    app = tmp_path / "app"
    for folder in prepackage.package_sources(REPO):
        shutil.copytree(folder, app / folder.name, ignore=shutil.ignore_patterns("__pycache__"))

    def compiled() -> list[str]:
        for source in app.rglob("*.py"):
            os.utime(source, (1_000_000_000, 1_000_000_000))  # as a zip extraction might
        result = subprocess.run(
            [sys.executable, "-c", COMPILED_AT_IMPORT, str(app)], capture_output=True,
            text=True, timeout=60, check=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": ""},
        )
        return json.loads(result.stdout)

    assert compiled()  # no bytecode: every module is compiled at import
    assert prepackage.compile_bytecode(app)
    assert compiled() == []
    (app / "shared" / "callflows" / "walk.py").write_text(
        (app / "shared" / "callflows" / "walk.py").read_text() + "\n# changed\n")
    assert compiled() == [str(app / "shared" / "callflows" / "walk.py")]  # stale: compiled anew


@pytest.mark.parametrize(("app_sid", "expected"), [("", 0), ("AP" + "c" * 32, 1)])
def test_prepackage_without_the_softphone_sdk_stops_only_when_browser_calls_are_wanted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], app_sid: str,
    expected: int,
) -> None:
    """No SDK in node_modules and no npm to install it: a deploy with TWILIO_TWIML_APP_SID set
    stops (its softphone could not work); one without goes on and says what the console lacks."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import build_console
    import prepackage

    def missing(*_: object, **__: object) -> list[str]:
        raise build_console.BuildError("node_modules has no @twilio/voice-sdk: run npm ci")

    monkeypatch.setattr(build_console, "build", missing)
    monkeypatch.setattr(prepackage.shutil, "which", lambda _name: None)
    monkeypatch.setenv("TWILIO_TWIML_APP_SID", app_sid)

    assert prepackage.bundle_softphone() == expected
    said = capsys.readouterr()
    assert "run npm ci" in (said.err if expected else said.out)


def test_prepackage_puts_the_pinned_sdk_in_the_package() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_console
    finally:
        sys.path.remove(str(REPO / "scripts"))
    try:
        build_console.sources(REPO)
    except build_console.BuildError as error:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"the SDK is not installed here: {error}")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "prepackage.py")],
                            capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**os.environ, "CALL_FLOW": "", "MESSAGE_FLOW": ""})

    assert result.returncode == 0, result.stderr
    assert "softphone: the Voice JavaScript SDK is in console/static/vendor/" in result.stdout
    assert build_console.build(REPO, check=True) == []
    assert "vendor" not in (REPO / ".funcignore").read_text()  # it ships
