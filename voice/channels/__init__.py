"""How callers reach a session: the caller protocol (`protocol`) and its audio formats
(`codecs`), the Twilio Media Streams dialect (`twilio`) and its handler (`phone`), the typed
text API (`chat`) and the kiosk page (`kiosk`, with its files in `static/`)."""
