"""Reading the message-flow file MESSAGE_FLOW names: once per process (per path and policy
settings), never per request; stamped or checked in full (shared.common.flowfile). A flow with
any problem is refused whole and logged once at ERROR naming every problem; sms_url then
answers with nothing (the opt-out keywords are still honoured)."""

from __future__ import annotations

from functools import lru_cache

from shared.common import flowfile
from shared.common.flowfile import FlowProblems
from shared.common.settings import SettingsError
from shared.messageflows.flow import MessageFlow, SmsPolicy, check
from shared.messageflows.settings import PolicyInputs, load_policy_inputs, load_sms_policy

SETTING = "MESSAGE_FLOW"
# Where a flow file is looked for (tests point it elsewhere).
APP_ROOT = flowfile.APP_ROOT
# What a stamp must name among its code: the check and the number policy it judged with.
JUDGES = ("shared/messageflows/flow.py", "shared/outbound/numbers.py")


def flow(path: str) -> MessageFlow | FlowProblems:
    """The checked flow at `path` under the current policy settings, or its problems."""
    return _flow(path, load_policy_inputs())


@lru_cache(maxsize=4)
def _flow(path: str, inputs: PolicyInputs) -> MessageFlow | FlowProblems:
    return flowfile.checked(
        path, SETTING, dict(inputs),
        full=lambda data: check(data, _policy()),
        vouched=lambda data: check(data, None),  # its numbers were judged by the deploy's check
        judges=JUDGES,
        root=APP_ROOT,
    )


def forget() -> None:
    """Forget the flows read (for tests and tools that change a flow under a running process)."""
    _flow.cache_clear()


def _policy() -> SmsPolicy:
    try:
        return load_sms_policy()
    except SettingsError as error:
        raise FlowProblems([f"the SMS policy's settings: {error.describe()}"]) from None
