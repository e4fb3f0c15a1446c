"""The worker's protobuf messages, loaded under a private module name.

The `azure-functions-runtime-v1` wheel ships its generated modules as a top-level `tests/protos`
package, which collides with this project's own `tests/` directory; its `__init__` also imports
the gRPC stubs (and so `grpc`, which the in-process host does not need). So the package is
recreated here as `_devhost_protos`: its `__path__` points at the wheel's directory, its
`__init__` is never run, and only the message modules are imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

PACKAGE = "_devhost_protos"


class ProtosNotFoundError(ImportError):
    """The worker wheel (or its protobuf modules) is not installed."""


def _protos_dir() -> Path:
    spec = importlib.util.find_spec("azure_functions_runtime_v1")
    if spec is None or not spec.submodule_search_locations:
        raise ProtosNotFoundError(
            "azure-functions-runtime-v1 is not installed; run: pip install --no-deps "
            "--ignore-requires-python azure-functions-runtime-v1==1.2.0 (scripts/test.sh does)"
        )
    site = Path(next(iter(spec.submodule_search_locations))).parent
    directory = site / "tests" / "protos"
    if not (directory / "FunctionRpc_pb2.py").is_file():
        raise ProtosNotFoundError(f"the worker's protobuf modules are missing from {directory}")
    return directory


def load() -> types.ModuleType:
    """Return the namespace the worker expects as `protos` (message classes as attributes)."""
    existing = sys.modules.get(PACKAGE)
    if existing is not None and hasattr(existing, "StreamingMessage"):
        return existing
    package = types.ModuleType(PACKAGE, __doc__)
    package.__path__ = [str(_protos_dir())]
    package.__package__ = PACKAGE
    sys.modules[PACKAGE] = package
    try:
        rpc = importlib.import_module(f"{PACKAGE}.FunctionRpc_pb2")
        nullable = importlib.import_module(f"{PACKAGE}.shared.NullableTypes_pb2")
    except Exception:
        del sys.modules[PACKAGE]
        raise
    for module in (rpc, nullable):
        for name, value in vars(module).items():
            # Message classes and top-level enums; not the modules the generated code imports.
            if not name.startswith("_") and not isinstance(value, types.ModuleType):
                setattr(package, name, value)
    return package
