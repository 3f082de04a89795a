"""librdkafka configuration from settings, in one place for consumers and producers.

Prefetch settings follow the field notes: with the defaults librdkafka reads
about half as fast as with a deep prefetch queue and a short fetch back-off.

Security is explicit and never downgrades: TLS files or SASL credentials given
with a protocol that would not use them are refused instead of ignored, the
certificate is always verified, and turning off the host-name check is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from koxpulse.errors import ConfigError
from koxpulse.settings import Settings

log = logging.getLogger(__name__)

_TLS = ("SSL", "SASL_SSL")
_SASL = ("SASL_SSL", "SASL_PLAINTEXT")


def security_config(settings: Settings) -> dict[str, Any]:
    """The security part of the librdkafka configuration; raises on contradictions."""
    proto = settings.kafka_security_protocol
    tls_files = {
        "--kafka-ca": settings.kafka_ca,
        "--kafka-cert": settings.kafka_cert,
        "--kafka-key": settings.kafka_key,
    }
    given_tls = [flag for flag, value in tls_files.items() if value]
    if given_tls and proto not in _TLS:
        raise ConfigError(
            f"{', '.join(given_tls)} given but --kafka-security-protocol is {proto}: "
            "use SSL or SASL_SSL (TLS files are never ignored)"
        )
    sasl_given = settings.kafka_sasl_username or settings.kafka_sasl_password_file
    if sasl_given and proto not in _SASL:
        raise ConfigError(
            f"SASL credentials given but --kafka-security-protocol is {proto}: use SASL_SSL"
        )
    config: dict[str, Any] = {"security.protocol": proto}
    if proto in _TLS:
        config["enable.ssl.certificate.verification"] = True
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_hostname_check else "none"
        )
        if not settings.kafka_hostname_check:
            log.warning("Kafka: broker host names are not checked against their certificates")
        for flag, key in (
            ("--kafka-ca", "ssl.ca.location"),
            ("--kafka-cert", "ssl.certificate.location"),
            ("--kafka-key", "ssl.key.location"),
        ):
            path = tls_files[flag]
            if path:
                if not Path(path).is_file():
                    raise ConfigError(f"{flag} {path}: no such file")
                config[key] = path
        if bool(settings.kafka_cert) != bool(settings.kafka_key):
            raise ConfigError("--kafka-cert and --kafka-key go together (mutual TLS)")
    if proto in _SASL:
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password_file:
            raise ConfigError(
                f"--kafka-security-protocol {proto} needs --kafka-sasl-username and "
                "--kafka-sasl-password-file"
            )
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = _read_secret(settings.kafka_sasl_password_file)
        if proto == "SASL_PLAINTEXT":
            log.warning("Kafka: SASL_PLAINTEXT sends credentials and data without TLS")
    return config


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"--kafka-sasl-password-file {path}: cannot read it ({exc.strerror})"
        ) from exc
    if not secret:
        raise ConfigError(f"--kafka-sasl-password-file {path}: the file is empty")
    return secret


def base_config(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_bootstrap:
        raise ConfigError("no Kafka bootstrap servers: give --kafka HOST:PORT")
    # librdkafka logs through Python logging (logger "librdkafka"), not straight to stderr,
    # so the CLI can keep its one-line errors and --debug shows everything.
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "logger": logging.getLogger("librdkafka"),
        **security_config(settings),
    }


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **base_config(settings),
        "group.id": settings.kafka_group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "queued.min.messages": 1_000_000,
        "fetch.queue.backoff.ms": 10,
        # A broker answers a fetch as soon as data is there, or after this wait; brokers
        # that only answer at the end of the wait (Tansu) delayed every message by up to
        # librdkafka's 500 ms default, which the event-to-alert latency pays in full.
        "fetch.wait.max.ms": 100,
        "enable.partition.eof": True,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **base_config(settings),
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "enable.idempotence": True,
    }


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration as it may be logged."""
    return {k: ("***" if "password" in k else v) for k, v in config.items() if k != "logger"}
