"""Courier settings: flags over `CHANNEL_*` environment over a TOML config file over defaults, and
`channel config show`, which never prints the Redis password."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from channel.cli import cli
from channel.courier.settings import DEFAULT_PORT, Settings, load_settings
from channel.protocol.errors import BadRequest

PASSWORD = "hunter2-do-not-print"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CHANNEL_* variable from the machine running the tests takes part."""
    for name in list(os.environ):
        if name.startswith("CHANNEL_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def show(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, ["config", "show", *args], env=env, catch_exceptions=False)


def test_flags_over_environment_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each setting comes from the strongest source that gives it: flag, env, file, default."""
    config = write(tmp_path / "courier.toml", 'port = 1111\nworkers = 3\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("CHANNEL_PORT", "2222")
    monkeypatch.setenv("CHANNEL_WORKERS", "4")
    settings = load_settings(config=config, port=3333, workers=None)
    assert (settings.port, settings.workers, settings.host) == (3333, 4, "0.0.0.0")
    assert settings.sweep_interval == Settings.model_fields["sweep_interval"].default
    assert settings.config == config
    monkeypatch.delenv("CHANNEL_PORT")
    assert load_settings(config=config).port == 1111
    assert load_settings().port == DEFAULT_PORT


def test_config_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHANNEL_CONFIG names the file when no flag does; its relative paths are the file's."""
    config = write(
        tmp_path / "courier.toml",
        'data_dir = "state"\nrate_limit_per_second = 5\nrate_limit_burst = 10\n',
    )
    monkeypatch.setenv("CHANNEL_CONFIG", str(config))
    settings = Settings()
    assert settings.data_dir == tmp_path / "state"
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (5, 10)
    assert settings.rate_limited
    assert not Settings(rate_limit_per_second=0).rate_limited


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("prot = 8700\n", "unknown settings: prot"),
        ("config = 'other.toml'\n", "unknown settings: config"),
        ("port = \n", "not valid TOML"),
        ("port = 'many'\n", "port:"),
        ("workers = 0\n", "workers:"),
    ],
)
def test_a_bad_config_file_is_refused_by_name(tmp_path: Path, text: str, fragment: str) -> None:
    """Unknown keys, broken TOML and bad values are errors naming the fault, never ignored."""
    config = write(tmp_path / "courier.toml", text)
    with pytest.raises(BadRequest, match=fragment):
        load_settings(config=config)


def test_serve_refuses_a_bad_config_file_in_one_line(tmp_path: Path) -> None:
    """`channel serve --config` with a bad file exits 2 with one error line, before starting."""
    config = write(tmp_path / "courier.toml", "prot = 8700\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.startswith("error: the config file")
    assert "prot" in result.output
    missing = CliRunner().invoke(cli, ["config", "show"], env={"CHANNEL_CONFIG": "/no/such.toml"})
    assert missing.exit_code == 2
    assert "cannot read the config file /no/such.toml" in missing.output


def test_config_show_prints_the_effective_settings(tmp_path: Path) -> None:
    """`config show --json` is the settings from env and file; the text form reads as TOML."""
    config = write(tmp_path / "courier.toml", "port = 1111\nlog_level = 'debug'\n")
    result = show("--config", str(config), "--json", CHANNEL_PORT="2222")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["port"], shown["log_level"], shown["config"]) == (2222, "debug", str(config))
    assert shown.keys() == Settings.model_fields.keys()
    text = show("--config", str(config)).output
    assert "port = 1111\n" in text
    assert "# directory: not set\n" in text


@pytest.mark.parametrize(
    "url",
    [
        f"redis://admin:{PASSWORD}@db.example:6379/0",
        f"redis://:{PASSWORD}@[::1]:6379/0",
        f"unix://:{PASSWORD}@/var/run/redis.sock?db=0",
        f"redis://db.example:6379/0?db=0&password={PASSWORD}",
    ],
)
def test_config_show_never_prints_the_redis_password(tmp_path: Path, url: str) -> None:
    """The Redis password, from the file or the environment, shows as *** in text and JSON."""
    config = write(tmp_path / "courier.toml", f"redis_url = {json.dumps(url)}\n")
    outputs = [
        show("--config", str(config)).output,
        show("--config", str(config), "--json").output,
        show("--json", CHANNEL_REDIS_URL=url).output,
        repr(load_settings(config=config)),
    ]
    for output in outputs:
        assert "***" in output
        assert PASSWORD not in output
    assert json.loads(outputs[1])["redis_url"].replace("***", PASSWORD) == url


BAD_REDIS_URLS = {
    "localhost:6379": "must start with redis://",
    "http://db.example:6379": "must start with redis://",
    f"redis://:{PASSWORD}@db.example:99999/0": "Port out of range",
    "redis://[::1": "is not a URL",
    "redis+cluster://a:6379,b:port": "is not a URL",
    "redis://:6379/0": "names no host",
    "unix://": "names no socket path",
}


@pytest.mark.parametrize("url", sorted(BAD_REDIS_URLS))
def test_a_bad_redis_url_is_one_line_and_hides_the_password(url: str) -> None:
    """A Redis URL with a bad scheme, host or port is refused in one line naming what is wrong,
    by `config show`, `serve` and `admin invite` alike, and never shows the password."""
    runner = CliRunner()
    results = [
        show(CHANNEL_REDIS_URL=url),
        runner.invoke(cli, ["serve", "--redis", url, "--port", "0"], catch_exceptions=False),
        runner.invoke(cli, ["admin", "invite", "ch.embassy", "--redis", url]),
    ]
    for result in results:
        assert result.exit_code == BadRequest.exit_code, result.output
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ")
        assert BAD_REDIS_URLS[url] in line
        assert PASSWORD not in result.output
