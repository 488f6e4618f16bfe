"""Clients of a voicedesk server: the tester's call client (`client`) and the microphone call
(`mic`, `mic_terminal`, `audio_device`)."""
