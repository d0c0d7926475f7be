"""What the node programs share (nodes/node.py): config file + flags, and endpoint strings.

The config file is the JSON the testbed writes for each node (testbed.processes.context); its
`spec.options` mapping holds the program's flags without dashes, and the command line wins.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from nodes import node
from nodes.registrar import server as registrar_server


def write_config(tmp_path: Path, **config: Any) -> Path:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    return path


def registrar_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
    return node.parse(registrar_server.parser(), argv)


def sample_config(tmp_path: Path, options: dict[str, Any]) -> Path:
    return write_config(
        tmp_path,
        name="pr1",
        addresses=["10.0.1.1", "10.0.2.1"],
        interfaces=[
            {"name": "pr1-eth0", "address": "10.0.1.1/24"},
            {"name": "pr1-eth1", "address": "10.0.2.1/24"},
        ],
        spec={"options": options},
    )


# ------------------------------------------------------------------ parse()


def test_without_config_the_defaults_hold() -> None:
    args, config = registrar_args([])
    assert config == {}
    assert args.keepalive_interval == 5.0 and args.local == [] and args.interface == []
    assert args.name == registrar_server.parser().prog


def test_config_options_become_flags(tmp_path: Path) -> None:
    path = sample_config(
        tmp_path,
        {
            "keepalive-interval": 1.5,
            "max_hres_items": 7,
            "server-id": "0x10",
            "no-announce": True,
            "backend": "tcp",
        },
    )
    args, config = registrar_args(["--config", str(path)])
    assert args.keepalive_interval == 1.5  # typed by argparse, as if typed on the command line
    assert args.max_hres_items == 7  # underscores are dashes
    assert args.server_id == 0x10
    assert args.no_announce is True  # true: the bare flag
    assert args.backend == "tcp"
    assert config["name"] == "pr1"


def test_false_option_is_left_out(tmp_path: Path) -> None:
    args, _ = registrar_args(["--config", str(sample_config(tmp_path, {"no-announce": False}))])
    assert args.no_announce is False


def test_command_line_wins_over_config_options(tmp_path: Path) -> None:
    path = sample_config(tmp_path, {"keepalive-interval": 1.5, "port": 4000})
    args, _ = registrar_args(["--keepalive-interval", "9", "--config", str(path)])
    assert args.keepalive_interval == 9.0
    assert args.port == 4000


def test_addresses_interfaces_and_name_come_from_the_config(tmp_path: Path) -> None:
    args, _ = registrar_args(["--config", str(sample_config(tmp_path, {}))])
    assert args.local == ["10.0.1.1", "10.0.2.1"]
    assert args.interface == ["pr1-eth0", "pr1-eth1"]
    assert args.name == "pr1"


def test_flags_replace_addresses_interfaces_and_name_of_the_config(tmp_path: Path) -> None:
    path = sample_config(tmp_path, {})
    argv = ["--config", str(path), "--local", "10.0.9.1", "--interface", "lo", "--name", "x"]
    args, _ = registrar_args(argv)
    assert (args.local, args.interface, args.name) == (["10.0.9.1"], ["lo"], "x")


def test_command_line_wins_for_repeatable_flags_too(tmp_path: Path) -> None:
    path = sample_config(tmp_path, {"local": "10.0.7.1"})
    args, _ = registrar_args(["--config", str(path), "--local", "10.0.9.1"])
    assert args.local == ["10.0.9.1"]


def test_unknown_option_in_the_config_is_an_argparse_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sample_config(tmp_path, {"no-such-option": 1})
    with pytest.raises(SystemExit) as exc:
        registrar_args(["--config", str(path)])
    assert exc.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_badly_typed_option_in_the_config_is_an_argparse_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        registrar_args(["--config", str(sample_config(tmp_path, {"max-hres-items": "many"}))])


@pytest.mark.parametrize("content", [None, "{not json"])
def test_unreadable_config_is_an_argparse_error(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exc:
        registrar_args(["--config", str(path)])
    assert exc.value.code == 2
    assert "cannot read config" in capsys.readouterr().err


def test_config_without_spec_is_fine(tmp_path: Path) -> None:
    args, config = registrar_args(["--config", str(write_config(tmp_path, addresses=["10.0.0.1"]))])
    assert args.local == ["10.0.0.1"] and config == {"addresses": ["10.0.0.1"]}


def test_registrar_options_follow_the_flags(tmp_path: Path) -> None:
    path = sample_config(tmp_path, {"server-id": "0xabc", "max-bad-pe-reports": 5, "backend": "tcp"})
    args, _ = registrar_args(["--config", str(path)])
    options = registrar_server.options_from(args)
    assert options.server_id == 0xABC
    assert options.max_bad_pe_reports == 5
    assert options.asap_addresses == ("10.0.1.1", "10.0.2.1")
    assert options.sctp is False
    assert options.announce is True  # it has interfaces to announce on


def test_registrar_peers_are_the_other_registrars_of_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, name="pr1", addresses=["10.0.1.1"], spec={"options": {"peer-heartbeat-cycle": 0.5}},
                        registrars=[{"name": "pr1", "addresses": ["10.0.1.1"], "enrp_port": 9901},
                                    {"name": "pr2", "addresses": ["10.0.1.2", "10.0.2.2"], "enrp_port": 9911}])  # fmt: skip
    args, config = registrar_args(["--config", str(path)])
    enrp = registrar_server.options_from(args, config).enrp
    assert enrp.peers == ((("10.0.1.2", "10.0.2.2"), 9911),) and enrp.heartbeat_cycle == 0.5
    assert enrp.multicast is False  # no interfaces in this config: unicast to the peers only
    args, config = registrar_args(["--config", str(path), "--peer", "10.9.9.9"])
    assert registrar_server.options_from(args, config).enrp.peers == ((("10.9.9.9",), 9901),)


def test_bad_enrp_options_are_refused() -> None:
    args, config = registrar_args(["--takeover-expiry", "0"])
    with pytest.raises(ValueError, match="ENRP timers"):
        registrar_server.options_from(args, config)


# ------------------------------------------------------------------ parse_endpoint()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.1.1.10", (("10.1.1.10",), 3863)),
        ("10.1.1.10:4000", (("10.1.1.10",), 4000)),
        ("10.1.1.10,10.1.2.10:3999", (("10.1.1.10", "10.1.2.10"), 3999)),
        ("10.1.1.10,10.1.2.10", (("10.1.1.10", "10.1.2.10"), 3863)),
        ("[fd00::1]:4000", (("fd00::1",), 4000)),
        ("[fd00::1]", (("fd00::1",), 3863)),
        ("[fd00::1,fd00:1::1]:4000", (("fd00::1", "fd00:1::1"), 4000)),
        ("fd00::1", (("fd00::1",), 3863)),
        ("registrar.example:1", (("registrar.example",), 1)),
        ("10.1.1.10:65535", (("10.1.1.10",), 65535)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[tuple[str, ...], int]) -> None:
    assert node.parse_endpoint(text, 3863) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":3863",
        "10.1.1.10:0",
        "10.1.1.10:65536",
        "10.1.1.10:port",
        "10.1.1.10:",
        "[fd00::1",
        "[fd00::1]:x",
        ",",
    ],
)
def test_parse_endpoint_errors(text: str) -> None:
    with pytest.raises(ValueError):
        node.parse_endpoint(text, 3863)


def test_parse_endpoint_rejects_a_bad_default_port() -> None:
    with pytest.raises(ValueError):
        node.parse_endpoint("10.1.1.10", 0)


def test_pool_element_options_from_a_testbed_config(tmp_path) -> None:
    """What the testbed writes becomes the PE's options: pool, policy, registrars with their port,
    the pool secret; without a secret there is no control channel (no cookies)."""
    import json as _json

    from nodes.pe import server

    config = {"name": "pe1", "addresses": ["10.1.1.11", "10.1.2.11"], "interfaces": [{"name": "eth0"}],
              "registrars": [{"addresses": ["10.1.1.10"], "port": 4000}], "pool_secret": "s3cret",
              "spec": {"handle": "CalcPool", "policy": "least-used", "service": "calc", "options": {"pe-id": "0x42"}}}  # fmt: skip
    path = tmp_path / "pe1.json"
    path.write_text(_json.dumps(config))
    args, loaded = node.parse(server.parser(), ["--config", str(path)])
    options, service, secret = server.options_from(args, loaded)
    assert (options.pool_handle, options.pe_id, options.policy.name, service) == (b"CalcPool", 0x42, "LU", "calc")
    assert [(r.addresses, r.port) for r in options.registrars] == [(("10.1.1.10",), 4000)]
    assert options.user_addresses == ("10.1.1.11", "10.1.2.11") and secret == b"s3cret" and options.control_channel
    del config["pool_secret"]
    path.write_text(_json.dumps(config))
    args, loaded = node.parse(server.parser(), ["--config", str(path)])
    options, _, secret = server.options_from(args, loaded)
    assert secret == b"" and not options.control_channel
