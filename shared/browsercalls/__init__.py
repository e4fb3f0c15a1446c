"""Calls from and to the browser (Twilio's Voice JavaScript SDK in the console): the access
token the browser's Device signs in with, and the TwiML App's voice URL that its calls reach,
held to make_call's number policy."""
