"""Kafka security settings: explicit, verified, never downgraded, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from koxpulse.cli import main
from koxpulse.errors import ConfigError
from koxpulse.kafka_config import consumer_config, redacted, security_config
from koxpulse.settings import load


def settings(**flags: object):
    return load({"kafka_bootstrap": "broker:9093", **flags}, env={})


def test_plaintext_is_the_default_and_carries_no_tls_or_sasl() -> None:
    assert security_config(settings()) == {"security.protocol": "PLAINTEXT"}


def test_tls_verifies_certificates_and_host_names(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = security_config(settings(kafka_security_protocol="SSL", kafka_ca=str(ca)))
    assert config == {
        "security.protocol": "SSL",
        "enable.ssl.certificate.verification": True,
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
    }


def test_sasl_over_tls_reads_the_password_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    config = consumer_config(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="koxpulse",
            kafka_sasl_password_file=str(secret),
        )
    )
    assert config["sasl.mechanism"] == "SCRAM-SHA-256"
    assert config["sasl.username"] == "koxpulse"
    assert config["sasl.password"] == "s3cret-value"
    assert config["enable.ssl.certificate.verification"] is True
    assert "s3cret" not in str(redacted(config))


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"kafka_ca": "ca.pem"}, "--kafka-ca given but --kafka-security-protocol is PLAINTEXT"),
        ({"kafka_sasl_username": "u"}, "SASL credentials given but"),
        (
            {"kafka_security_protocol": "SSL", "kafka_sasl_password_file": "pw"},
            "SASL credentials given but --kafka-security-protocol is SSL",
        ),
        ({"kafka_security_protocol": "SASL_SSL"}, "needs --kafka-sasl-username"),
        ({"kafka_security_protocol": "SSL", "kafka_ca": "/nonexistent/ca.pem"}, "no such file"),
    ],
)
def test_contradictions_are_refused_not_ignored(flags: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("-", r"\-")):
        security_config(settings(**flags))


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        security_config(
            settings(
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_username="u",
                kafka_sasl_password_file=str(empty),
            )
        )


def test_cli_misuse_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--kafka", "127.0.0.1:1", "--kafka-ca", "ca.pem"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--kafka-ca given but --kafka-security-protocol is PLAINTEXT" in err
