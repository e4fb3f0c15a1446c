"""Call flows: what an inbound call does, from the call-flow file CALL_FLOW names (menus,
forwarding one by one or all at once, voicemail, business hours, blocked callers).

Entry points: `walk.start` (voice_url, when CALL_FLOW is set) and `walk.resume` (the call_flow
webhook every URL of a flow's TwiML names). The format and its check: `flow` (a flow with any
problem is refused whole); reading the file once per process: `loading`; the policy its numbers
pass (make_call's): `settings`. Recordings are kept by shared.records.recordings.
"""
