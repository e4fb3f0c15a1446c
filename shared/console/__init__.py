"""The console page's server side: its static files, served with a strict Content-Security-
Policy. The data it shows comes from the key-protected record, voicemail, broadcast and opt-out
functions; nothing here is imported by a webhook."""
