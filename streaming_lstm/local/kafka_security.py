"""A SASL_SSL listener for the local Apache Kafka broker (``streaming-lstm broker --secure``, the
tests' secured broker): TLS with a certificate made at start-up by the JDK's ``keytool`` (a PKCS12
keystore for the broker, its certificate as PEM for clients), and SCRAM-SHA-512 users created when
the log directory is formatted. The broker's own traffic (inter-broker, controller) stays on
listeners of its own on loopback.

What a client passes is what it would pass to any secured Kafka (:meth:`SecureListener.client_options`,
the ``kafka.``-prefixed Java client names, or :meth:`write_client_properties`, a client properties file).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from streaming_lstm.local.jvm_deps import java_executable

MECHANISM = "SCRAM-SHA-512"
USER = "streaming-lstm"


@dataclass
class SecureListener:
    """The secured listener's settings: the client port's user and password, the internal port."""

    internal_port: int
    user: str = USER
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    store_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    conf_dir: Path = Path()

    @property
    def keystore(self) -> Path:
        return self.conf_dir / "broker.p12"

    @property
    def ca_file(self) -> Path:
        """The broker's certificate, PEM: the clients' truststore."""
        return self.conf_dir / "broker-ca.pem"

    def make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 and localhost, once per data directory."""
        if self.keystore.exists() and self.ca_file.exists():
            return
        keytool = str(Path(java_executable()).with_name("keytool"))
        store = ["-keystore", str(self.keystore), "-storepass", self.store_password, "-storetype", "PKCS12"]
        subprocess.run(
            [keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "30",
             "-dname", "CN=localhost", "-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-keypass", self.store_password, *store],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run([keytool, "-exportcert", "-rfc", "-alias", "broker", "-file", str(self.ca_file), *store], check=True, capture_output=True)

    def server_properties(self, client_port: int, controller_port: int) -> list[str]:
        return [
            f"listeners=SASL_SSL://127.0.0.1:{client_port},INTERNAL://127.0.0.1:{self.internal_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{client_port},INTERNAL://127.0.0.1:{self.internal_port}",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={self.store_password}",
            "ssl.keystore.type=PKCS12",
        ]

    def format_args(self) -> list[str]:
        """The storage tool's arguments that create the client user with its SCRAM credentials."""
        return ["--add-scram", f"{MECHANISM}=[name={self.user},password={self.password}]"]

    def jaas(self, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{self.user}" password="{secret}";'

    def client_options(self, password: str | None = None) -> dict[str, str]:
        """What a client passes (``--kafka-option`` form), with another ``password`` for a test of a wrong one."""
        return {
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": MECHANISM,
            "kafka.sasl.jaas.config": self.jaas(password),
            "kafka.ssl.truststore.type": "PEM",
            "kafka.ssl.truststore.location": str(self.ca_file),
        }

    def write_client_properties(self, path: Path) -> Path:
        """The same as a Kafka client properties file (Java names without the ``kafka.`` prefix)."""
        lines = [f"{k.removeprefix('kafka.')}={v}" for k, v in self.client_options().items()]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path
