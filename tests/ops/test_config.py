"""Settings: defaults, TOML, environment and flags, in that order of precedence."""

from pathlib import Path

import pytest

from voice.config import ConfigError, Settings, load_settings, settings_as_toml


def test_defaults_serve_on_loopback():
    settings = load_settings(environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8765)
    assert settings.asr.model == "tiny.en"
    assert settings.agent.backend == "auto"
    assert settings.turns.max_utterance_ms == 30_000


def test_flags_beat_environment_beat_toml(tmp_path):
    toml = tmp_path / "voicedesk.toml"
    toml.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[asr]\nbeam_size = 3\n')
    settings = load_settings(
        toml,
        environ={"VOICEDESK_PORT": "9100", "VOICEDESK_ASR_BEAM_SIZE": "2", "HOME": "/x"},
        flags={"port": 9200, "kb": Path("kb"), "llm": None},
    )
    assert settings.server.port == 9200
    assert settings.server.host == "0.0.0.0"
    assert settings.asr.beam_size == 2
    assert settings.agent.kb_dir == Path("kb")
    assert settings.agent.backend == "auto"


def test_values_are_converted_to_their_types():
    settings = load_settings(
        environ={
            "VOICEDESK_TURNS_SILENCE_MS": "450",
            "VOICEDESK_TTS_LENGTH_SCALE": "1.2",
            "VOICEDESK_ASR_LANGUAGE": "none",
            "VOICEDESK_LLM": "extractive",
        }
    )
    assert settings.turns.silence_ms == 450
    assert settings.tts.length_scale == 1.2
    assert settings.asr.language is None
    assert settings.agent.backend == "extractive"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VOICEDESK_SERVER_PROT": "1"}, "unknown setting 'server.prot'"),
        ({"VOICEDESK_NOPE": "1"}, "unknown setting 'nope'"),
        ({"VOICEDESK_PORT": "eighty"}, "server.port"),
        ({"VOICEDESK_LLM": "gpt"}, "not one of auto, ollama, extractive"),
    ],
)
def test_bad_settings_fail_loudly(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_bad_toml_names_the_file(tmp_path):
    toml = tmp_path / "voicedesk.toml"
    toml.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="voicedesk.toml"):
        load_settings(toml, environ={})


def test_printed_settings_read_back_the_same(tmp_path):
    settings = load_settings(environ={"VOICEDESK_PORT": "9300", "VOICEDESK_KB": "/srv/kb"})
    toml = tmp_path / "voicedesk.toml"
    toml.write_text(settings_as_toml(settings))
    assert load_settings(toml, environ={}) == settings
    assert load_settings(toml, environ={}) != Settings()


def test_every_secret_is_kept_out_of_the_printed_settings():
    secret = "redis://:s3cret@redis.internal:6379/0"
    settings = load_settings(
        environ={
            "VOICEDESK_LIVE_URL": secret,
            "VOICEDESK_RECORDS_URL": "postgresql://voicedesk:s3cret@db.internal/voicedesk",
            "VOICEDESK_LIVE_PREFIX": "hotline-a",
            "VOICEDESK_SERVER_TRUSTED_PROXIES": "10.0.0.2",
        }
    )
    assert settings.live.url == secret and settings.live.prefix == "hotline-a"
    text = settings_as_toml(settings)
    assert "s3cret" not in text
    assert text.count("url = (set; not shown)") == 2
    assert 'prefix = "hotline-a"' in text and 'trusted_proxies = "10.0.0.2"' in text
