"""Texts that come in (sms_url): what the app does with each one.

Opt-out keywords (STOP...) mark the sender opted out (shared.records.optouts) and get no reply
from the app (Twilio's own confirmation is the reply); START opts back in; HELP gets
SMS_HELP_REPLY. Any other text gets the reply.
"""
