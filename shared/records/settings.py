"""Where the app's tables and queues live: the Functions host's own storage connection
(AzureWebJobsStorage), a connection string or identity-based."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from shared.common import public_url
from shared.common.settings import UNRESOLVED_KEY_VAULT_REFERENCE, Reader, loader

# The Functions host's own storage connection, which the app's records share: a connection
# string (locally UseDevelopmentStorage=true, for Azurite), or the identity-based settings the
# host documents for AzureWebJobsStorage (on Azure: account name, managedidentity, client ID).
STORAGE_SETTINGS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
)
# Azurite's fixed, documented development account: the emulator accepts only this key, and it
# is no secret (Microsoft publishes it). UseDevelopmentStorage=true means exactly this account.
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={DEVELOPMENT_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class StorageSettings(NamedTuple):
    """Where the app's tables (and queues) live, and how it signs in."""

    connection_string: str | None  # a connection string, else the endpoints below
    table_endpoint: str | None
    queue_endpoint: str | None
    managed_identity_client_id: str | None  # with __credential=managedidentity


def _service_uri(reader: Reader, name: str, service: str) -> str | None:
    """A service's URI as the Functions host takes one: https and a host (http only to this
    machine, as `public_url.is_loopback` judges it: Azurite). Unchecked, "::junk" reached the
    storage SDK and failed every use with a TypeError, the timers' included (an attack run's)."""
    value = reader.get(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        usable = bool(parts.hostname) and parts.port != 0 and (
            parts.scheme == "https"
            or (parts.scheme == "http" and public_url.is_loopback(parts.netloc)))
    except ValueError:
        usable = False
    if not usable:
        reader.malformed(name, f"the storage account's {service} service URL, like "
                               f"https://mystorage.{service}.core.windows.net")
        return None
    return value


def _storage_settings(reader: Reader) -> StorageSettings:
    value = reader.get("AzureWebJobsStorage")
    if value is not None:
        if value.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
            value = DEVELOPMENT_STORAGE
        elif value.lower().startswith("@microsoft.keyvault("):
            reader.problems.append(("AzureWebJobsStorage", UNRESOLVED_KEY_VAULT_REFERENCE))
        elif not _usable_connection_string(value):
            reader.malformed("AzureWebJobsStorage", "a storage connection string with "
                             "AccountName and AccountKey, or a SharedAccessSignature and an "
                             "endpoint")
        return StorageSettings(value, None, None, None)
    account = reader.get("AzureWebJobsStorage__accountName")
    tables = _service_uri(reader, "AzureWebJobsStorage__tableServiceUri", "table")
    queues = _service_uri(reader, "AzureWebJobsStorage__queueServiceUri", "queue")
    if account is not None:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            reader.malformed("AzureWebJobsStorage__accountName", "a storage account name")
        tables = tables or f"https://{account}.table.core.windows.net"
        queues = queues or f"https://{account}.queue.core.windows.net"
    if tables is None and reader.get("AzureWebJobsStorage__tableServiceUri") is None:
        reader.problems.append(
            (
                "AzureWebJobsStorage",
                "is not set (nor AzureWebJobsStorage__accountName): the app keeps its records "
                "in Azure Storage; locally, set it to UseDevelopmentStorage=true (Azurite)",
            )
        )
    credential = (reader.get("AzureWebJobsStorage__credential") or "").lower()
    client_id = reader.get("AzureWebJobsStorage__clientId")
    return StorageSettings(
        connection_string=None,
        table_endpoint=tables,
        queue_endpoint=queues,
        managed_identity_client_id=(client_id or "") if credential == "managedidentity" else None,
    )


def _usable_connection_string(value: str) -> bool:
    """What the storage SDKs need of a connection string to build a client: `Name=value` parts
    separated by `;`, an account key or a SAS, and an account name or the endpoints. (Their own
    parser is private, and raises only when the first storage call is made, after a call or a
    text may already have gone out.)"""
    parts = [part for part in value.split(";") if part.strip()]
    if not parts or not all("=" in part for part in parts):
        return False
    found = {name.strip().lower(): v.strip() for name, _, v in (p.partition("=") for p in parts)}
    if found.get("accountkey"):  # a key signs for an account: it needs the account's name
        return bool(found.get("accountname")) and _is_base64(found["accountkey"])
    if found.get("sharedaccesssignature"):  # a SAS needs somewhere to go
        return bool(found.get("accountname")) or bool(
            found.get("tableendpoint") and found.get("queueendpoint"))
    return False


def _is_base64(key: str) -> bool:
    """An account key is base64 (the SDK decodes it to sign each request; one that does not
    decode failed at the first storage call as "no credential could sign in")."""
    import base64
    import binascii

    try:
        return bool(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        return False


load_storage_settings = loader(STORAGE_SETTINGS, _storage_settings)
