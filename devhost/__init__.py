"""Dev-only tooling: run the function app through the real Azure Functions Python worker.

Nothing here is deployed (`.funcignore` excludes `devhost/`). Core Tools (`func start`) cannot
be installed everywhere, but the worker Azure runs is on PyPI; these modules play the host's
part around it, in-process for tests and over HTTP for curl and signed Twilio webhooks.
"""
