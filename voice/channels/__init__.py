"""How callers reach a session: the caller protocol (`protocol`), its audio formats (`codecs`)
and its handler (`caller`, `/call` and `/api/chat`), the Twilio Media Streams dialect (`twilio`)
and its handler (`phone`), the typed text API (`chat`), the kiosk page (`kiosk`, with its files
in `static/`), and every close code (`closes`)."""
