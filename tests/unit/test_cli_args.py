"""Command-line parsing: global options work before and after the command."""
from daemon.cli import _parser


def test_config_before_or_after_command():
    assert _parser().parse_args(["--config", "a.toml", "tickets"]).config == "a.toml"
    assert _parser().parse_args(["tickets", "--config", "b.toml"]).config == "b.toml"
    assert _parser().parse_args(["tickets"]).config is None
    assert _parser().parse_args(["--debug", "show", "1"]).debug is True
    assert _parser().parse_args(["show", "1"]).debug is False
