"""Configuration: defaults, the file, environment overrides, one-line errors."""

from __future__ import annotations

import pytest

from e2a.core import config

SECRET = "s" * 40


def write(tmp_path, text: str):
    path = tmp_path / "e2a.toml"
    path.write_text(text)
    return path


def test_defaults_need_only_the_secret(tmp_path):
    cfg = config.load(write(tmp_path, ""), env={"E2A_HMAC_SECRET": SECRET})
    assert cfg.database.url == "postgresql:///e2a"
    assert cfg.http.listen == "127.0.0.1:8080"
    assert cfg.mail.max_message_bytes == 10 * 1024 * 1024
    assert cfg.mail.max_recipients == 50
    assert cfg.mail.authserv_id == cfg.mail.hostname != ""


def test_missing_secret_names_the_key_and_the_variable(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, ""), env={})
    assert "secrets.hmac_secret" in str(err.value)
    assert "E2A_HMAC_SECRET" in str(err.value)
    assert "\n" not in str(err.value)


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n'
                           '[database]\nurl = "postgresql://file/db"\n')
    cfg = config.load(path, env={"E2A_DATABASE_URL": "postgresql://env/db",
                                 "E2A_PUBLIC_URL": "https://mail.example.com",
                                 "E2A_MAIL_MAX_RECIPIENTS": "7"})
    assert cfg.database.url == "postgresql://env/db"
    assert cfg.http.public_url == "https://mail.example.com"
    assert cfg.mail.max_recipients == 7


@pytest.mark.parametrize(("text", "fragment"), [
    ('[database]\nurl = "mysql://x"', "database.url: must be a URL"),
    ('[http]\nlisten = "nowhere"', "http.listen: must be unix:/path or host:port"),
    # Postfix reaches these over TCP (master.cf inet services, content_filter).
    ('[filter]\nreinject = "unix:/run/x.sock"', "filter.reinject: must be host:port"),
    ('[mail]\nmax_recipients = "many"', "mail.max_recipients: must be a int"),
    ('[mail]\nmax_recipients = 0', "mail.max_recipients: must be greater than 0"),
    ('[mail]\nshared_domain = "Not A Domain"', "mail.shared_domain"),
    ('[log]\nlevel = "loud"', "log.level: must be one of"),
    ('[mail]\nmax_recipient = 5', "mail.max_recipient: unknown key"),
    ('[nosuch]\nx = 1', "[nosuch]: unknown section"),
    ('[mail', "not valid TOML"),
])
def test_bad_values_fail_in_one_line_naming_the_key(tmp_path, text, fragment):
    path = write(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n' + text
                 if not text.startswith("[mail\n") else text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path, env={})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_short_secret_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="at least 32 characters"):
        config.load(write(tmp_path, ""), env={"E2A_HMAC_SECRET": "short"})


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(config.ConfigError, match="no such configuration file"):
        config.load(env={"E2A_CONFIG": str(tmp_path / "nope.toml"), "E2A_HMAC_SECRET": SECRET})


def test_example_lists_every_key():
    example = config.render_example()
    for key in config.KEYS:
        assert f"{key.name} =" in example


def test_hitl_addresses_default_to_the_shared_domain(tmp_path):
    cfg = config.load(write(tmp_path, '[mail]\nshared_domain = "agents.example.com"\n'),
                      env={"E2A_HMAC_SECRET": SECRET})
    assert cfg.hitl.reply_domain == "agents.example.com"
    assert cfg.hitl.notify_from == "approvals@agents.example.com"
    bare = config.load(write(tmp_path, '[mail]\nhostname = "mx.example.com"\n'),
                       env={"E2A_HMAC_SECRET": SECRET,
                            "E2A_HITL_NOTIFY_FROM": "Review@Example.com"})
    assert bare.hitl.reply_domain == "mx.example.com"
    assert bare.hitl.notify_from == "Review@Example.com"


def test_hitl_notify_from_must_be_an_address(tmp_path):
    with pytest.raises(config.ConfigError, match=r"hitl\.notify_from: must be an email"):
        config.load(write(tmp_path, '[hitl]\nnotify_from = "nobody"\n'),
                    env={"E2A_HMAC_SECRET": SECRET})
